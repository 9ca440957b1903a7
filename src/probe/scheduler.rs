//! placeholder
pub struct Scheduled {
    pub probe: Box<dyn super::Probe>,
    pub interval: std::time::Duration,
    pub fast_interval: std::time::Duration,
}
