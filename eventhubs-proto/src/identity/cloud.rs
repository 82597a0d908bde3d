//! Azure clouds for Entra ID: the authority host, the Event Hubs namespace
//! suffix and the Event Hubs resource, each overridable.
//!
//! | `AZURE_ENVIRONMENT` | authority host | namespace suffix |
//! |---|---|---|
//! | `AzurePublicCloud` | `https://login.microsoftonline.com/` | `servicebus.windows.net` |
//! | `AzureChinaCloud` | `https://login.chinacloudapi.cn/` | `servicebus.chinacloudapi.cn` |
//! | `AzureUSGovernmentCloud` | `https://login.microsoftonline.us/` | `servicebus.usgovcloudapi.net` |
//! | `AzureGermanCloud` (retired) | `https://login.microsoftonline.de/` | `servicebus.cloudapi.de` |
//!
//! The Event Hubs resource is `https://eventhubs.azure.net` in every cloud
//! (Microsoft's "Authenticate an application with Microsoft Entra ID to
//! access Event Hubs resources"); its scope is
//! `https://eventhubs.azure.net/.default`.

use crate::eventhubs::Environment;

use super::error::CredentialError;
use super::request::resource_to_scope;

/// The Event Hubs resource (managed identity `resource`, token `aud`).
pub const EVENTHUBS_RESOURCE: &str = "https://eventhubs.azure.net";

/// The Event Hubs scope of the v2.0 endpoint.
pub const EVENTHUBS_SCOPE: &str = "https://eventhubs.azure.net/.default";

/// Where tokens come from and which names a cloud uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cloud {
    authority_host: String,
    namespace_suffix: String,
    eventhubs_resource: String,
}

impl Default for Cloud {
    fn default() -> Self {
        Cloud::from_environment(Environment::Public)
    }
}

impl Cloud {
    /// The cloud of an environment.
    pub fn from_environment(environment: Environment) -> Self {
        let authority = match environment {
            Environment::Public => "https://login.microsoftonline.com/",
            Environment::China => "https://login.chinacloudapi.cn/",
            Environment::UsGovernment => "https://login.microsoftonline.us/",
            Environment::Germany => "https://login.microsoftonline.de/",
        };
        Cloud {
            authority_host: authority.to_owned(),
            namespace_suffix: environment.service_bus_suffix().to_owned(),
            eventhubs_resource: EVENTHUBS_RESOURCE.to_owned(),
        }
    }

    /// With another authority host (`AZURE_AUTHORITY_HOST`): an `https://`
    /// URL, or `http://` on a loopback host (a local test server). A
    /// trailing `/` is added.
    pub fn with_authority_host(mut self, host: &str) -> Result<Self, CredentialError> {
        self.authority_host = normalize_authority(host)?;
        Ok(self)
    }

    /// With another namespace suffix (no leading dot).
    pub fn with_namespace_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.namespace_suffix = suffix.into().trim_start_matches('.').to_owned();
        self
    }

    /// With another Event Hubs resource (e.g. a sovereign cloud's).
    pub fn with_eventhubs_resource(mut self, resource: impl Into<String>) -> Self {
        self.eventhubs_resource = resource.into().trim_end_matches('/').to_owned();
        self
    }

    /// The authority host, ending in `/`.
    pub fn authority_host(&self) -> &str {
        &self.authority_host
    }

    /// The namespace DNS suffix.
    pub fn namespace_suffix(&self) -> &str {
        &self.namespace_suffix
    }

    /// The Event Hubs resource, without a trailing `/`.
    pub fn eventhubs_resource(&self) -> &str {
        &self.eventhubs_resource
    }

    /// The Event Hubs scope (`<resource>/.default`).
    pub fn eventhubs_scope(&self) -> String {
        resource_to_scope(&self.eventhubs_resource)
    }
}

/// Checks and normalises an authority host URL.
pub fn normalize_authority(host: &str) -> Result<String, CredentialError> {
    let host = host.trim();
    let (scheme, rest) = host
        .split_once("://")
        .ok_or_else(|| CredentialError::Config(format!("authority host {host:?} is not a URL")))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let name = match authority.strip_prefix('[').and_then(|a| a.find(']')) {
        Some(end) => &authority[..end + 2],
        None => authority.split(':').next().unwrap_or_default(),
    };
    if name.is_empty() {
        return Err(CredentialError::Config(format!(
            "authority host {host:?} has no host name"
        )));
    }
    let loopback = matches!(name, "localhost" | "[::1]") || name.starts_with("127.");
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(CredentialError::Config(format!(
                "authority host {host:?} must use https (http only on a loopback host)"
            )))
        }
    }
    Ok(if host.ends_with('/') {
        host.to_owned()
    } else {
        format!("{host}/")
    })
}
