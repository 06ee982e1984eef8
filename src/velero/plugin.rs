//! Velero's provider plugins: how a location's `provider` names one, the image it ships
//! in, the volume drivers its snapshotter handles.

/// A provider as Velero's plugin manager resolves it: names without `/` are
/// `velero.io/<name>`.
pub fn normalize(provider: &str) -> String {
    if provider.contains('/') {
        provider.to_string()
    } else {
        format!("velero.io/{provider}")
    }
}

/// The plugins whose config stowage knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    Aws,
    Azure,
    Gcp,
    Portworx,
}

impl Plugin {
    pub fn of(provider: &str) -> Option<Plugin> {
        match normalize(provider).as_str() {
            "velero.io/aws" => Some(Plugin::Aws),
            "velero.io/azure" => Some(Plugin::Azure),
            "velero.io/gcp" => Some(Plugin::Gcp),
            "portworx.io/portworx" => Some(Plugin::Portworx),
            _ => None,
        }
    }

    /// The provider name a location uses for it.
    pub fn provider_name(self) -> &'static str {
        match self {
            Plugin::Aws => "aws",
            Plugin::Azure => "azure",
            Plugin::Gcp => "gcp",
            Plugin::Portworx => "portworx.io/portworx",
        }
    }

    /// The image the plugin ships in (a substring of the init container's image).
    pub fn image(self) -> &'static str {
        match self {
            Plugin::Aws => "velero-plugin-for-aws",
            Plugin::Azure => "velero-plugin-for-microsoft-azure",
            Plugin::Gcp => "velero-plugin-for-gcp",
            Plugin::Portworx => "portworx/velero-plugin",
        }
    }

    /// The plugin whose volume snapshotter handles volumes of a CSI or in-tree driver.
    pub fn for_driver(driver: &str) -> Option<Plugin> {
        match driver {
            "ebs.csi.aws.com" | "kubernetes.io/aws-ebs" => Some(Plugin::Aws),
            "disk.csi.azure.com" | "kubernetes.io/azure-disk" => Some(Plugin::Azure),
            "pd.csi.storage.gke.io" | "kubernetes.io/gce-pd" => Some(Plugin::Gcp),
            "pxd.portworx.com" | "kubernetes.io/portworx-volume" => Some(Plugin::Portworx),
            _ => None,
        }
    }

    /// The config key that points the plugin's object store at another endpoint.
    pub fn endpoint_key(self) -> Option<&'static str> {
        match self {
            Plugin::Aws => Some("s3Url"),
            Plugin::Azure => Some("storageAccountURI"),
            Plugin::Gcp => Some("storeEndpoint"),
            Plugin::Portworx => None,
        }
    }
}
