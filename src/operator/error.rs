//! The operator's one error type. `reason()` is low-cardinality: it labels metrics and Events.

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API answered with an error or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be turned into JSON for a write.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
    /// An object in the cache could not be read as its kind (kept out of every computation).
    #[error("invalid object: {0}")]
    InvalidObject(String),
}

impl Error {
    /// A short CamelCase reason for metrics labels, Events and conditions.
    /// Every value of [`Error::reason`]: the `reason` label's bounded set, pre-created at zero
    /// so that dashboards show 0 errors rather than no data before the first one.
    pub const REASONS: [&'static str; 7] = [
        "Conflict",
        "NotFound",
        "ApiServerError",
        "ApiRejected",
        "ApiUnreachable",
        "Serialization",
        "InvalidObject",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "Conflict",
            Error::Kube(kube::Error::Api(status)) if status.code == 404 => "NotFound",
            Error::Kube(kube::Error::Api(status)) if status.code >= 500 => "ApiServerError",
            Error::Kube(kube::Error::Api(_)) => "ApiRejected",
            Error::Kube(_) => "ApiUnreachable",
            Error::Serialization(_) => "Serialization",
            Error::InvalidObject(_) => "InvalidObject",
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
