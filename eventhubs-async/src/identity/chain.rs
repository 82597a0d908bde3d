//! Credentials tried in order, and the chain the environment describes.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use eventhubs_proto::identity::env::{chain_from_env, ChainConfig, CredentialConfig, EnvVarError};
use eventhubs_proto::identity::jwt::{AssertionOptions, ThumbprintHeader};

use super::client::read_certificate;
use super::{
    token_provider_via_scope, AccessToken, ClientCertificateCredential, ClientSecretCredential,
    CredentialError, CredentialOptions, ManagedIdentityCredential, TokenCredential,
    WorkloadIdentityCredential,
};
use crate::runtime::{BoxFuture, Runtime};

/// Why a chain could not be built from the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The variables are inconsistent or malformed.
    #[error(transparent)]
    Env(#[from] EnvVarError),
    /// A credential could not be built (an unreadable certificate file).
    #[error(transparent)]
    Credential(#[from] CredentialError),
}

/// Credentials tried in order until one gives a token (azidentity's
/// `ChainedTokenCredential`): an unavailable one is passed over, any other
/// failure ends the attempt. The credential that succeeded is used from
/// then on.
pub struct ChainedTokenCredential {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: Arc<Mutex<Option<usize>>>,
}

impl fmt::Debug for ChainedTokenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.sources.iter().map(|(n, _)| *n).collect();
        f.debug_struct("ChainedTokenCredential")
            .field("sources", &names)
            .field(
                "chosen",
                &*self.chosen.lock().unwrap_or_else(PoisonError::into_inner),
            )
            .finish()
    }
}

impl ChainedTokenCredential {
    /// Tries `sources` in order; each is named for errors.
    pub fn new(sources: Vec<(&'static str, Arc<dyn TokenCredential>)>) -> Self {
        ChainedTokenCredential {
            sources,
            chosen: Arc::new(Mutex::new(None)),
        }
    }

    /// The names of the credentials, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.sources.iter().map(|(n, _)| *n).collect()
    }
}

impl TokenCredential for ChainedTokenCredential {
    fn get_token(&self, scope: &str) -> BoxFuture<Result<AccessToken, CredentialError>> {
        let sources = self.sources.clone();
        let chosen = self.chosen.clone();
        let scope = scope.to_owned();
        Box::pin(async move {
            let pick = *chosen.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(i) = pick {
                return sources[i].1.get_token(&scope).await;
            }
            let mut reasons = Vec::new();
            for (i, (name, source)) in sources.iter().enumerate() {
                match source.get_token(&scope).await {
                    Ok(t) => {
                        tracing::debug!(
                            credential = name,
                            "credential chain: using this credential"
                        );
                        *chosen.lock().unwrap_or_else(PoisonError::into_inner) = Some(i);
                        return Ok(t);
                    }
                    Err(e) if e.is_unavailable() => reasons.push(format!("{name}: {e}")),
                    Err(e) => return Err(e),
                }
            }
            Err(CredentialError::Chain(reasons))
        })
    }
}

/// The credentials the `AZURE_*` variables describe, in the Go library's
/// order: client secret, else client certificate; then workload identity;
/// then managed identity (see [`eventhubs_proto::identity::env`]).
pub struct DefaultAzureCredential<R: Runtime> {
    chain: ChainedTokenCredential,
    scope: String,
    _runtime: std::marker::PhantomData<fn() -> R>,
}

impl<R: Runtime> fmt::Debug for DefaultAzureCredential<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultAzureCredential")
            .field("chain", &self.chain)
            .field("scope", &self.scope)
            .finish()
    }
}

impl<R: Runtime> DefaultAzureCredential<R> {
    /// From this process's environment.
    pub fn from_process_env(options: CredentialOptions) -> Result<Self, ChainError> {
        Self::from_env(|k| std::env::var(k).ok(), options)
    }

    /// From variables through `lookup`. The cloud and authority in
    /// `options` are replaced by the environment's when it names them.
    pub fn from_env(
        lookup: impl Fn(&str) -> Option<String>,
        options: CredentialOptions,
    ) -> Result<Self, ChainError> {
        let config = chain_from_env(lookup)?;
        Self::from_config(config, options, true)
    }

    pub(crate) fn from_config(
        config: ChainConfig,
        mut options: CredentialOptions,
        managed_identity: bool,
    ) -> Result<Self, ChainError> {
        options.cloud = config.cloud.clone();
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        for c in config.credentials {
            let name = c.name();
            let credential: Arc<dyn TokenCredential> = match c {
                CredentialConfig::ClientSecret { client, secret } => Arc::new(
                    ClientSecretCredential::<R>::with_client(client, secret, &options)?,
                ),
                CredentialConfig::ClientCertificate {
                    client,
                    path,
                    password,
                    send_chain,
                } => {
                    let certificate =
                        read_certificate(path.as_ref(), password.as_ref().map(|p| p.expose()))?;
                    let assertion = AssertionOptions {
                        send_chain,
                        thumbprint: ThumbprintHeader::Sha1,
                        ..AssertionOptions::default()
                    };
                    Arc::new(ClientCertificateCredential::<R>::with_client(
                        client,
                        certificate,
                        assertion,
                        &options,
                    )?)
                }
                CredentialConfig::WorkloadIdentity { client, token_file } => {
                    Arc::new(WorkloadIdentityCredential::<R>::with_client(
                        client,
                        token_file.into(),
                        &options,
                    )?)
                }
                CredentialConfig::ManagedIdentity { source, id } => {
                    if !managed_identity {
                        continue;
                    }
                    Arc::new(ManagedIdentityCredential::<R>::with_source(
                        source,
                        id,
                        options.clone(),
                    )?)
                }
                _ => continue,
            };
            sources.push((name, credential));
        }
        Ok(DefaultAzureCredential {
            scope: options.scope(),
            chain: ChainedTokenCredential::new(sources),
            _runtime: std::marker::PhantomData,
        })
    }

    /// The credentials in the order they are tried.
    pub fn names(&self) -> Vec<&'static str> {
        self.chain.names()
    }

    fn default_scope(&self) -> String {
        self.scope.clone()
    }
}

impl<R: Runtime> TokenCredential for DefaultAzureCredential<R> {
    fn get_token(&self, scope: &str) -> BoxFuture<Result<AccessToken, CredentialError>> {
        self.chain.get_token(scope)
    }
}

/// The service principal the environment describes, without managed
/// identity (azidentity's `EnvironmentCredential`): a client secret, a
/// certificate, or a federated token file.
pub struct EnvironmentCredential<R: Runtime> {
    inner: DefaultAzureCredential<R>,
}

impl<R: Runtime> fmt::Debug for EnvironmentCredential<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvironmentCredential")
            .field("chain", &self.inner.chain)
            .finish()
    }
}

impl<R: Runtime> EnvironmentCredential<R> {
    /// From this process's environment.
    pub fn from_process_env(options: CredentialOptions) -> Result<Self, ChainError> {
        Self::from_env(|k| std::env::var(k).ok(), options)
    }

    /// From variables through `lookup`; unavailable when they name no
    /// service principal.
    pub fn from_env(
        lookup: impl Fn(&str) -> Option<String>,
        options: CredentialOptions,
    ) -> Result<Self, ChainError> {
        let config = chain_from_env(lookup)?;
        Ok(EnvironmentCredential {
            inner: DefaultAzureCredential::from_config(config, options, false)?,
        })
    }

    fn default_scope(&self) -> String {
        self.inner.scope.clone()
    }
}

impl<R: Runtime> TokenCredential for EnvironmentCredential<R> {
    fn get_token(&self, scope: &str) -> BoxFuture<Result<AccessToken, CredentialError>> {
        if self.inner.chain.sources.is_empty() {
            return Box::pin(std::future::ready(Err(CredentialError::Unavailable {
                credential: "EnvironmentCredential",
                reason: "set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE".into(),
            })));
        }
        self.inner.get_token(scope)
    }
}

token_provider_via_scope!(DefaultAzureCredential, EnvironmentCredential);
