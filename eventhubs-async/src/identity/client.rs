//! Service principal credentials on the v2.0 token endpoint: a secret, a
//! certificate assertion, or a federated token file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use eventhubs_proto::identity::jwt::{AssertionOptions, UnsignedJwt};
use eventhubs_proto::identity::{ConfidentialClient, RetryRules};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};

use super::{
    token_provider_via_scope, AccessToken, ClientCertificate, Common, CredentialError,
    CredentialOptions, Secret, TokenCredential,
};
use crate::runtime::{BoxFuture, Runtime};

fn app(
    options: &CredentialOptions,
    tenant_id: &str,
    client_id: &str,
) -> Result<ConfidentialClient, CredentialError> {
    ConfidentialClient::new(&options.cloud, tenant_id, client_id)
}

struct SecretInner<R: Runtime> {
    client: ConfidentialClient,
    secret: Secret,
    common: Common<R>,
}

/// A service principal authenticating with a client secret (OAuth 2.0
/// client credentials grant, RFC 6749 4.4; azure-identity's
/// `ClientSecretCredential`).
pub struct ClientSecretCredential<R: Runtime> {
    inner: Arc<SecretInner<R>>,
}

impl<R: Runtime> Clone for ClientSecretCredential<R> {
    fn clone(&self) -> Self {
        ClientSecretCredential {
            inner: self.inner.clone(),
        }
    }
}

impl<R: Runtime> fmt::Debug for ClientSecretCredential<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecretCredential")
            .field("client", &self.inner.client)
            .field("secret", &self.inner.secret)
            .field("scope", &self.inner.common.scope)
            .finish()
    }
}

impl<R: Runtime> ClientSecretCredential<R> {
    /// Application `client_id` of `tenant_id` with `secret`.
    pub fn new(
        tenant_id: &str,
        client_id: &str,
        secret: impl Into<Secret>,
        options: CredentialOptions,
    ) -> Result<Self, CredentialError> {
        Self::with_client(
            app(&options, tenant_id, client_id)?,
            secret.into(),
            &options,
        )
    }

    pub(crate) fn with_client(
        client: ConfidentialClient,
        secret: Secret,
        options: &CredentialOptions,
    ) -> Result<Self, CredentialError> {
        Ok(ClientSecretCredential {
            inner: Arc::new(SecretInner {
                client,
                secret,
                common: Common::new(options)?,
            }),
        })
    }

    fn default_scope(&self) -> String {
        self.inner.common.scope.clone()
    }
}

impl<R: Runtime> TokenCredential for ClientSecretCredential<R> {
    fn get_token(&self, scope: &str) -> BoxFuture<Result<AccessToken, CredentialError>> {
        let inner = self.inner.clone();
        let scope = scope.to_owned();
        Box::pin(async move {
            let i = &*inner;
            i.common
                .cached(&scope, || async {
                    let request = i.client.secret_request(&i.secret, &scope);
                    i.common
                        .fetch(&request, RetryRules::EntraId, None, None, i.secret.expose())
                        .await
                })
                .await
        })
    }
}

struct CertificateInner<R: Runtime> {
    client: ConfidentialClient,
    certificate: ClientCertificate,
    key: RsaKeyPair,
    assertion: AssertionOptions,
    rng: SystemRandom,
    common: Common<R>,
}

/// A service principal authenticating with a certificate: each token
/// request carries a fresh RS256 client assertion (RFC 7523) naming the
/// certificate by its SHA-1 thumbprint (`x5t`), and its chain (`x5c`) when
/// asked (azure-identity's `ClientCertificateCredential`).
pub struct ClientCertificateCredential<R: Runtime> {
    inner: Arc<CertificateInner<R>>,
}

impl<R: Runtime> Clone for ClientCertificateCredential<R> {
    fn clone(&self) -> Self {
        ClientCertificateCredential {
            inner: self.inner.clone(),
        }
    }
}

impl<R: Runtime> fmt::Debug for ClientCertificateCredential<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificateCredential")
            .field("client", &self.inner.client)
            .field("certificate", &self.inner.certificate)
            .field("send_chain", &self.inner.assertion.send_chain)
            .field("scope", &self.inner.common.scope)
            .finish()
    }
}

impl<R: Runtime> ClientCertificateCredential<R> {
    /// Application `client_id` of `tenant_id` with `certificate`.
    pub fn new(
        tenant_id: &str,
        client_id: &str,
        certificate: ClientCertificate,
        options: CredentialOptions,
    ) -> Result<Self, CredentialError> {
        Self::with_client(
            app(&options, tenant_id, client_id)?,
            certificate,
            AssertionOptions::default(),
            &options,
        )
    }

    /// With the certificate of a PEM or PKCS#12 / PFX file and its
    /// password (for an encrypted key or a PFX).
    pub fn from_file(
        tenant_id: &str,
        client_id: &str,
        path: impl AsRef<Path>,
        password: Option<&str>,
        options: CredentialOptions,
    ) -> Result<Self, CredentialError> {
        let certificate = read_certificate(path.as_ref(), password)?;
        Self::new(tenant_id, client_id, certificate, options)
    }

    /// The same credential, with these assertion settings (`x5c`,
    /// thumbprint headers, lifetime).
    pub fn with_assertion_options(
        self,
        assertion: AssertionOptions,
    ) -> Result<Self, CredentialError> {
        let i = &*self.inner;
        Ok(ClientCertificateCredential {
            inner: Arc::new(CertificateInner {
                client: i.client.clone(),
                certificate: i.certificate.clone(),
                key: key_pair(&i.certificate)?,
                assertion,
                rng: SystemRandom::new(),
                common: i.common.share(),
            }),
        })
    }

    pub(crate) fn with_client(
        client: ConfidentialClient,
        certificate: ClientCertificate,
        assertion: AssertionOptions,
        options: &CredentialOptions,
    ) -> Result<Self, CredentialError> {
        Ok(ClientCertificateCredential {
            inner: Arc::new(CertificateInner {
                key: key_pair(&certificate)?,
                client,
                certificate,
                assertion,
                rng: SystemRandom::new(),
                common: Common::new(options)?,
            }),
        })
    }

    fn default_scope(&self) -> String {
        self.inner.common.scope.clone()
    }
}

pub(crate) fn read_certificate(
    path: &Path,
    password: Option<&str>,
) -> Result<ClientCertificate, CredentialError> {
    let bytes = std::fs::read(path).map_err(|e| CredentialError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(ClientCertificate::from_bytes(&bytes, password)?)
}

fn key_pair(certificate: &ClientCertificate) -> Result<RsaKeyPair, CredentialError> {
    RsaKeyPair::from_der(certificate.private_key().as_bytes()).map_err(|e| {
        CredentialError::Certificate(eventhubs_proto::identity::CertificateError::Unsupported(
            format!("the RSA key cannot sign: {e}"),
        ))
    })
}

impl<R: Runtime> CertificateInner<R> {
    fn assertion(&self) -> Result<Secret, CredentialError> {
        let mut bits = [0u8; 16];
        self.rng
            .fill(&mut bits)
            .map_err(|_| CredentialError::Config("no randomness for the assertion's jti".into()))?;
        let unsigned = UnsignedJwt::client_assertion(
            &self.certificate,
            self.client.client_id(),
            &self.client.token_url(),
            (self.common.clock)(),
            u128::from_be_bytes(bits),
            self.assertion,
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                unsigned.signing_input(),
                &mut signature,
            )
            .map_err(|_| CredentialError::Config("RS256 signing failed".into()))?;
        Ok(unsigned.sign_with(&signature))
    }
}

impl<R: Runtime> TokenCredential for ClientCertificateCredential<R> {
    fn get_token(&self, scope: &str) -> BoxFuture<Result<AccessToken, CredentialError>> {
        let inner = self.inner.clone();
        let scope = scope.to_owned();
        Box::pin(async move {
            let i = &*inner;
            i.common
                .cached(&scope, || async {
                    let assertion = i.assertion()?;
                    let request = i.client.assertion_request(&assertion, &scope);
                    i.common
                        .fetch(
                            &request,
                            RetryRules::EntraId,
                            None,
                            None,
                            assertion.expose(),
                        )
                        .await
                })
                .await
        })
    }
}

/// The federated token file as last read.
#[derive(Default)]
struct TokenFile {
    stamp: Option<(SystemTime, u64)>,
    assertion: Option<Secret>,
}

struct WorkloadInner<R: Runtime> {
    client: ConfidentialClient,
    path: PathBuf,
    file: Mutex<TokenFile>,
    common: Common<R>,
}

/// Workload identity (AKS): the Kubernetes service account token in
/// `AZURE_FEDERATED_TOKEN_FILE` is the client assertion. The file is read
/// again whenever its modification time or size changed (the kubelet
/// rotates it), never quoted in errors or logs.
pub struct WorkloadIdentityCredential<R: Runtime> {
    inner: Arc<WorkloadInner<R>>,
}

impl<R: Runtime> Clone for WorkloadIdentityCredential<R> {
    fn clone(&self) -> Self {
        WorkloadIdentityCredential {
            inner: self.inner.clone(),
        }
    }
}

impl<R: Runtime> fmt::Debug for WorkloadIdentityCredential<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadIdentityCredential")
            .field("client", &self.inner.client)
            .field("token_file", &self.inner.path)
            .field("scope", &self.inner.common.scope)
            .finish()
    }
}

impl<R: Runtime> WorkloadIdentityCredential<R> {
    /// Application `client_id` of `tenant_id`, federated through the token
    /// in `token_file`.
    pub fn new(
        tenant_id: &str,
        client_id: &str,
        token_file: impl Into<PathBuf>,
        options: CredentialOptions,
    ) -> Result<Self, CredentialError> {
        Self::with_client(
            app(&options, tenant_id, client_id)?,
            token_file.into(),
            &options,
        )
    }

    pub(crate) fn with_client(
        client: ConfidentialClient,
        path: PathBuf,
        options: &CredentialOptions,
    ) -> Result<Self, CredentialError> {
        Ok(WorkloadIdentityCredential {
            inner: Arc::new(WorkloadInner {
                client,
                path,
                file: Mutex::new(TokenFile::default()),
                common: Common::new(options)?,
            }),
        })
    }

    fn default_scope(&self) -> String {
        self.inner.common.scope.clone()
    }
}

impl<R: Runtime> WorkloadInner<R> {
    /// The token file's content, read again if the file changed.
    fn assertion(&self) -> Result<Secret, CredentialError> {
        let fail = |e: std::io::Error| CredentialError::File {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        };
        let meta = std::fs::metadata(&self.path).map_err(fail)?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if file.stamp != Some(stamp) || file.assertion.is_none() {
            let text = std::fs::read_to_string(&self.path).map_err(fail)?;
            let text = text.trim();
            if text.is_empty() {
                return Err(CredentialError::File {
                    path: self.path.display().to_string(),
                    reason: "the federated token file is empty".into(),
                });
            }
            file.assertion = Some(Secret::new(text));
            file.stamp = Some(stamp);
        }
        Ok(file.assertion.clone().expect("just read"))
    }
}

impl<R: Runtime> TokenCredential for WorkloadIdentityCredential<R> {
    fn get_token(&self, scope: &str) -> BoxFuture<Result<AccessToken, CredentialError>> {
        let inner = self.inner.clone();
        let scope = scope.to_owned();
        Box::pin(async move {
            let i = &*inner;
            i.common
                .cached(&scope, || async {
                    let assertion = i.assertion()?;
                    let request = i.client.assertion_request(&assertion, &scope);
                    i.common
                        .fetch(
                            &request,
                            RetryRules::EntraId,
                            None,
                            None,
                            assertion.expose(),
                        )
                        .await
                })
                .await
        })
    }
}

token_provider_via_scope!(
    ClientSecretCredential,
    ClientCertificateCredential,
    WorkloadIdentityCredential
);
