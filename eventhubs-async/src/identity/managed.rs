//! Managed identity: IMDS on VMs and scale sets, the identity endpoint on
//! App Service and Functions.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use eventhubs_proto::identity::env::{
    AZURE_POD_IDENTITY_AUTHORITY_HOST, IDENTITY_ENDPOINT, IDENTITY_HEADER,
};
use eventhubs_proto::identity::request::scope_to_resource;
use eventhubs_proto::identity::retry::MANAGED_IDENTITY_PROBE_TIMEOUT;
use eventhubs_proto::identity::RetryRules;

use super::{
    token_provider_via_scope, AccessToken, Common, CredentialError, CredentialOptions,
    ManagedIdentityId, ManagedIdentitySource, TokenCredential,
};
use crate::runtime::{BoxFuture, Runtime};

struct Inner<R: Runtime> {
    source: ManagedIdentitySource,
    id: ManagedIdentityId,
    /// An endpoint answered once: later requests get the full time-out.
    answered: AtomicBool,
    common: Common<R>,
}

/// The identity Azure assigned to the resource the program runs on
/// (azure-identity's `ManagedIdentityCredential`).
///
/// The first request gets 1 s to be answered; if nothing answers (no
/// IMDS, as on a developer machine) the credential is unavailable, so a
/// chain moves on quickly. IMDS saying the identity is not assigned (400)
/// is unavailable too. Other failures are retried by the endpoints' rules
/// ([`RetryRules::ManagedIdentity`]).
pub struct ManagedIdentityCredential<R: Runtime> {
    inner: Arc<Inner<R>>,
}

impl<R: Runtime> Clone for ManagedIdentityCredential<R> {
    fn clone(&self) -> Self {
        ManagedIdentityCredential {
            inner: self.inner.clone(),
        }
    }
}

impl<R: Runtime> fmt::Debug for ManagedIdentityCredential<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedIdentityCredential")
            .field("source", &self.inner.source)
            .field("id", &self.inner.id)
            .field("scope", &self.inner.common.scope)
            .finish()
    }
}

impl<R: Runtime> ManagedIdentityCredential<R> {
    /// Identity `id` from the endpoint the process environment names: App
    /// Service when `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set, else
    /// IMDS (at `AZURE_POD_IDENTITY_AUTHORITY_HOST` when set).
    pub fn new(id: ManagedIdentityId, options: CredentialOptions) -> Result<Self, CredentialError> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let source = match (var(IDENTITY_ENDPOINT), var(IDENTITY_HEADER)) {
            (Some(endpoint), Some(header)) => ManagedIdentitySource::AppService {
                endpoint,
                header: header.into(),
            },
            _ => match var(AZURE_POD_IDENTITY_AUTHORITY_HOST) {
                Some(host) => ManagedIdentitySource::imds_at_host(&host),
                None => ManagedIdentitySource::imds(),
            },
        };
        Self::with_source(source, id, options)
    }

    /// Identity `id` from `source`.
    pub fn with_source(
        source: ManagedIdentitySource,
        id: ManagedIdentityId,
        options: CredentialOptions,
    ) -> Result<Self, CredentialError> {
        Ok(ManagedIdentityCredential {
            inner: Arc::new(Inner {
                source,
                id,
                answered: AtomicBool::new(false),
                common: Common::new(&options)?,
            }),
        })
    }

    fn default_scope(&self) -> String {
        self.inner.common.scope.clone()
    }
}

impl<R: Runtime> TokenCredential for ManagedIdentityCredential<R> {
    fn get_token(&self, scope: &str) -> BoxFuture<Result<AccessToken, CredentialError>> {
        let inner = self.inner.clone();
        let scope = scope.to_owned();
        Box::pin(async move {
            let i = &*inner;
            i.common
                .cached(&scope, || async {
                    let request = i.source.request(scope_to_resource(&scope), &i.id);
                    let probing = !i.answered.load(Ordering::Relaxed);
                    let where_ = request
                        .url()
                        .split('?')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let unavailable = move |reason: String| CredentialError::Unavailable {
                        credential: "ManagedIdentityCredential",
                        reason: format!(
                            "no managed identity endpoint answered at {where_}: {reason}"
                        ),
                    };
                    let secret = match &i.source {
                        ManagedIdentitySource::AppService { header, .. } => header.expose(),
                        _ => "",
                    };
                    let result = i
                        .common
                        .fetch(
                            &request,
                            RetryRules::ManagedIdentity,
                            probing.then_some(MANAGED_IDENTITY_PROBE_TIMEOUT),
                            if probing { Some(&unavailable) } else { None },
                            secret,
                        )
                        .await;
                    if !matches!(
                        result,
                        Err(CredentialError::Unavailable { .. } | CredentialError::Transport { .. })
                    ) {
                        i.answered.store(true, Ordering::Relaxed);
                    }
                    result
                })
                .await
        })
    }
}

token_provider_via_scope!(ManagedIdentityCredential);
