//! placeholder
use crate::config::schema::ProbeConfig;
use crate::domain::ProbeOutcome;
use futures::future::BoxFuture;
pub struct AgentsProbe;
impl AgentsProbe {
    pub fn from_config(cfg: &ProbeConfig) -> Result<Self, super::ProbeBuildError> {
        Err(super::ProbeBuildError::missing(cfg, "todo"))
    }
}
impl super::Probe for AgentsProbe {
    fn id(&self) -> &str {
        ""
    }
    fn kind(&self) -> &'static str {
        ""
    }
    fn check(&self) -> BoxFuture<'_, ProbeOutcome> {
        Box::pin(async { ProbeOutcome::failure("", None) })
    }
}
