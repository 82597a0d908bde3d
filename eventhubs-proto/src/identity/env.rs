//! The credential chain the environment describes, as a pure function of a
//! variable lookup.
//!
//! Order, the Go library's (`aad.JWTProviderWithEnvironmentVars`: client
//! secret, then client certificate, then managed identity) with workload
//! identity where today's `DefaultAzureCredential`s put it (azidentity,
//! azure-identity, .NET: Environment → WorkloadIdentity → ManagedIdentity):
//!
//! 1. `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET`: a client
//!    secret; else
//! 2. `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_CERTIFICATE_PATH`
//!    (today's name) or `AZURE_CERTIFICATE_PATH` (the Go library's), with
//!    `AZURE_CLIENT_CERTIFICATE_PASSWORD` or `AZURE_CERTIFICATE_PASSWORD`
//!    and `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN` (`1`/`true`): a client
//!    certificate (PEM or PFX);
//! 3. `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_FEDERATED_TOKEN_FILE`:
//!    workload identity (AKS);
//! 4. always last, managed identity: App Service / Functions when
//!    `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set, else IMDS (under
//!    `AZURE_POD_IDENTITY_AUTHORITY_HOST` when set); user-assigned by
//!    `AZURE_CLIENT_ID` when set, as azidentity's and azure-identity's
//!    `DefaultAzureCredential` do.
//!
//! `AZURE_ENVIRONMENT` picks the cloud and `AZURE_AUTHORITY_HOST` overrides
//! its authority. Unset and blank are the same. A secret or certificate
//! path without the tenant and client id is an error naming the missing
//! variable, not a silent fall-through to managed identity.

use std::fmt;

use crate::eventhubs::Environment;

use super::cloud::Cloud;
use super::request::{ConfidentialClient, ManagedIdentityId, ManagedIdentitySource};
use super::Secret;

/// `AZURE_TENANT_ID`.
pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
/// `AZURE_CLIENT_ID`.
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
/// `AZURE_CLIENT_SECRET`.
pub const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
/// `AZURE_CLIENT_CERTIFICATE_PATH` (today's SDKs).
pub const AZURE_CLIENT_CERTIFICATE_PATH: &str = "AZURE_CLIENT_CERTIFICATE_PATH";
/// `AZURE_CLIENT_CERTIFICATE_PASSWORD` (today's SDKs).
pub const AZURE_CLIENT_CERTIFICATE_PASSWORD: &str = "AZURE_CLIENT_CERTIFICATE_PASSWORD";
/// `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN`.
pub const AZURE_CLIENT_SEND_CERTIFICATE_CHAIN: &str = "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN";
/// `AZURE_CERTIFICATE_PATH` (the Go library's name).
pub const AZURE_CERTIFICATE_PATH: &str = "AZURE_CERTIFICATE_PATH";
/// `AZURE_CERTIFICATE_PASSWORD` (the Go library's name).
pub const AZURE_CERTIFICATE_PASSWORD: &str = "AZURE_CERTIFICATE_PASSWORD";
/// `AZURE_FEDERATED_TOKEN_FILE`.
pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// `AZURE_AUTHORITY_HOST`.
pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
/// `AZURE_ENVIRONMENT`.
pub const AZURE_ENVIRONMENT: &str = "AZURE_ENVIRONMENT";
/// `IDENTITY_ENDPOINT` (App Service, Functions).
pub const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
/// `IDENTITY_HEADER` (App Service, Functions).
pub const IDENTITY_HEADER: &str = "IDENTITY_HEADER";
/// `AZURE_POD_IDENTITY_AUTHORITY_HOST` (the IMDS host, e.g. AAD Pod Identity).
pub const AZURE_POD_IDENTITY_AUTHORITY_HOST: &str = "AZURE_POD_IDENTITY_AUTHORITY_HOST";

/// Why the environment's credentials are unusable. Never quotes a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvVarError {
    /// A value is unusable.
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A variable needs another that is not set.
    #[error("environment variable {present} is set but {missing} is not")]
    Incomplete {
        /// The one set.
        present: &'static str,
        /// The one missing.
        missing: &'static str,
    },
    /// The old and new names of a variable disagree.
    #[error("environment variables {first} and {second} are both set and differ; set one")]
    Mismatch {
        /// Today's name.
        first: &'static str,
        /// The Go library's name.
        second: &'static str,
    },
}

/// One credential the environment configures.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialConfig {
    /// A service principal with a client secret.
    ClientSecret {
        /// The application.
        client: ConfidentialClient,
        /// The secret.
        secret: Secret,
    },
    /// A service principal with a certificate file.
    ClientCertificate {
        /// The application.
        client: ConfidentialClient,
        /// The PEM or PFX file.
        path: String,
        /// Its password, if any.
        password: Option<Secret>,
        /// Send the chain as `x5c`.
        send_chain: bool,
    },
    /// Workload identity: a federated token file as the assertion.
    WorkloadIdentity {
        /// The application.
        client: ConfidentialClient,
        /// The token file.
        token_file: String,
    },
    /// Managed identity.
    ManagedIdentity {
        /// IMDS or App Service.
        source: ManagedIdentitySource,
        /// Which identity.
        id: ManagedIdentityId,
    },
}

impl CredentialConfig {
    /// The credential's type name, as the SDKs call it.
    pub fn name(&self) -> &'static str {
        match self {
            CredentialConfig::ClientSecret { .. } => "ClientSecretCredential",
            CredentialConfig::ClientCertificate { .. } => "ClientCertificateCredential",
            CredentialConfig::WorkloadIdentity { .. } => "WorkloadIdentityCredential",
            CredentialConfig::ManagedIdentity { .. } => "ManagedIdentityCredential",
        }
    }
}

impl fmt::Debug for CredentialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialConfig::ClientSecret { client, secret } => f
                .debug_struct("ClientSecret")
                .field("client", client)
                .field("secret", secret)
                .finish(),
            CredentialConfig::ClientCertificate {
                client,
                path,
                password,
                send_chain,
            } => f
                .debug_struct("ClientCertificate")
                .field("client", client)
                .field("path", path)
                .field("password", password)
                .field("send_chain", send_chain)
                .finish(),
            CredentialConfig::WorkloadIdentity { client, token_file } => f
                .debug_struct("WorkloadIdentity")
                .field("client", client)
                .field("token_file", token_file)
                .finish(),
            CredentialConfig::ManagedIdentity { source, id } => f
                .debug_struct("ManagedIdentity")
                .field("source", source)
                .field("id", id)
                .finish(),
        }
    }
}

/// The cloud and the credentials to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    /// The cloud (with `AZURE_AUTHORITY_HOST` applied).
    pub cloud: Cloud,
    /// The credentials, in the order to try them; managed identity last.
    pub credentials: Vec<CredentialConfig>,
}

/// Reads the chain from variables through `lookup`.
pub fn chain_from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<ChainConfig, EnvVarError> {
    let get = |name: &str| {
        lookup(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let either = |new: &'static str,
                  old: &'static str|
     -> Result<Option<(String, &'static str)>, EnvVarError> {
        match (get(new), get(old)) {
            (Some(a), Some(b)) if a != b => Err(EnvVarError::Mismatch {
                first: new,
                second: old,
            }),
            (Some(a), _) => Ok(Some((a, new))),
            (None, Some(b)) => Ok(Some((b, old))),
            (None, None) => Ok(None),
        }
    };

    let mut cloud = match get(AZURE_ENVIRONMENT) {
        None => Cloud::default(),
        Some(name) => Cloud::from_environment(Environment::from_name(&name).map_err(|e| {
            EnvVarError::Invalid {
                name: AZURE_ENVIRONMENT,
                reason: e.to_string(),
            }
        })?),
    };
    if let Some(host) = get(AZURE_AUTHORITY_HOST) {
        cloud = cloud
            .with_authority_host(&host)
            .map_err(|e| EnvVarError::Invalid {
                name: AZURE_AUTHORITY_HOST,
                reason: e.to_string(),
            })?;
    }

    let tenant = get(AZURE_TENANT_ID);
    let client_id = get(AZURE_CLIENT_ID);
    let secret = get(AZURE_CLIENT_SECRET);
    let certificate = either(AZURE_CLIENT_CERTIFICATE_PATH, AZURE_CERTIFICATE_PATH)?;
    let password = either(
        AZURE_CLIENT_CERTIFICATE_PASSWORD,
        AZURE_CERTIFICATE_PASSWORD,
    )?;
    let token_file = get(AZURE_FEDERATED_TOKEN_FILE);

    // The application that a secret, certificate or token file is for.
    let app = |present: &'static str| -> Result<ConfidentialClient, EnvVarError> {
        let tenant = tenant.clone().ok_or(EnvVarError::Incomplete {
            present,
            missing: AZURE_TENANT_ID,
        })?;
        let client_id = client_id.clone().ok_or(EnvVarError::Incomplete {
            present,
            missing: AZURE_CLIENT_ID,
        })?;
        ConfidentialClient::new(&cloud, tenant, client_id).map_err(|e| EnvVarError::Invalid {
            name: AZURE_TENANT_ID,
            reason: e.to_string(),
        })
    };

    let mut credentials = Vec::new();
    if let Some(secret) = secret {
        credentials.push(CredentialConfig::ClientSecret {
            client: app(AZURE_CLIENT_SECRET)?,
            secret: Secret::new(secret),
        });
    } else if let Some((path, name)) = certificate {
        let send_chain = match get(AZURE_CLIENT_SEND_CERTIFICATE_CHAIN).as_deref() {
            None => false,
            Some(v) if v == "1" || v.eq_ignore_ascii_case("true") => true,
            Some(v) if v == "0" || v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(EnvVarError::Invalid {
                    name: AZURE_CLIENT_SEND_CERTIFICATE_CHAIN,
                    reason: format!("{v:?} is not 1, true, 0 or false"),
                })
            }
        };
        credentials.push(CredentialConfig::ClientCertificate {
            client: app(name)?,
            path,
            password: password.map(|(p, _)| Secret::new(p)),
            send_chain,
        });
    }
    if let Some(token_file) = token_file {
        credentials.push(CredentialConfig::WorkloadIdentity {
            client: app(AZURE_FEDERATED_TOKEN_FILE)?,
            token_file,
        });
    }
    let source = match (get(IDENTITY_ENDPOINT), get(IDENTITY_HEADER)) {
        (Some(endpoint), Some(header)) => ManagedIdentitySource::AppService {
            endpoint,
            header: Secret::new(header),
        },
        _ => match get(AZURE_POD_IDENTITY_AUTHORITY_HOST) {
            Some(host) => ManagedIdentitySource::imds_at_host(&host),
            None => ManagedIdentitySource::imds(),
        },
    };
    let id = client_id.clone().map_or(
        ManagedIdentityId::SystemAssigned,
        ManagedIdentityId::ClientId,
    );
    credentials.push(CredentialConfig::ManagedIdentity { source, id });
    Ok(ChainConfig { cloud, credentials })
}
