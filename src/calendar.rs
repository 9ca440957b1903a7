//! Calendar jobs: maintenance windows and drills, on tokio-cron-scheduler.
//!
//! Jobs only produce events (`MaintenanceStarted`, `DrillStarted`, each with
//! its end time); the engine ends them itself when `until` passes, so the end
//! survives a restart through the engine snapshot. Cron expressions have 6
//! fields (seconds first) and are evaluated in UTC.
//!
//! tokio-cron-scheduler polls every 500 ms, so a job may fire up to half a
//! second late; that is fine for calendar work and is why probes do not use it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use crate::config::schema::{DrillConfig, MaintenanceConfig};
use crate::domain::Timestamp;
use crate::engine::Event;

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("scheduler: {0}")]
    Scheduler(#[from] JobSchedulerError),
    #[error("invalid cron expression {expr:?}: {why}")]
    Cron { expr: String, why: String },
}

/// A running scheduler; dropping it does not stop jobs, call `shutdown`.
pub struct Calendar {
    sched: JobScheduler,
}

impl Calendar {
    /// Schedules every window and drill, and reports windows already in
    /// progress (the agent may start in the middle of one) right away.
    pub async fn start(
        maintenance: &[MaintenanceConfig],
        drills: &[DrillConfig],
        events: mpsc::Sender<Event>,
    ) -> Result<Calendar, CalendarError> {
        let sched = JobScheduler::new().await?;
        let now = Utc::now();
        for m in maintenance {
            if let Some(until) = in_progress(&m.cron, m.duration.get(), now)? {
                tracing::info!(message = "Maintenance window in progress at start.", window = %m.name, until = %until);
                let _ = events
                    .send(Event::MaintenanceStarted {
                        name: m.name.clone(),
                        until,
                    })
                    .await;
            }
            let (name, duration, tx) = (m.name.clone(), m.duration.get(), events.clone());
            let job = Job::new_async(m.cron.as_str(), move |_, _| {
                let (name, tx) = (name.clone(), tx.clone());
                Box::pin(async move {
                    let until = Timestamp::now().add(duration);
                    tracing::info!(message = "Maintenance window starts.", window = %name, until = %until);
                    let _ = tx.send(Event::MaintenanceStarted { name, until }).await;
                })
            })?;
            sched.add(job).await?;
        }
        for d in drills {
            // Drills are not resumed when the agent starts inside one: a drill
            // moves real calls, so it only ever starts on its schedule.
            let (name, profile, duration, tx) = (
                d.name.clone(),
                d.profile.clone(),
                d.duration.get(),
                events.clone(),
            );
            let job = Job::new_async(d.cron.as_str(), move |_, _| {
                let (name, profile, tx) = (name.clone(), profile.clone(), tx.clone());
                Box::pin(async move {
                    let until = Timestamp::now().add(duration);
                    tracing::info!(message = "Drill starts.", drill = %name, profile = %profile, until = %until);
                    let _ = tx
                        .send(Event::DrillStarted {
                            name,
                            profile,
                            until,
                        })
                        .await;
                })
            })?;
            sched.add(job).await?;
        }
        sched.start().await?;
        Ok(Calendar { sched })
    }

    pub async fn shutdown(mut self) {
        if let Err(error) = self.sched.shutdown().await {
            tracing::warn!(message = "Calendar scheduler did not shut down cleanly.", %error);
        }
    }
}

fn parse(expr: &str) -> Result<croner::Cron, CalendarError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| CalendarError::Cron {
            expr: expr.to_string(),
            why: e.to_string(),
        })
}

/// If a window of `duration` starting at an occurrence of `expr` covers
/// `now`, its end time.
pub fn in_progress(
    expr: &str,
    duration: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Timestamp>, CalendarError> {
    let cron = parse(expr)?;
    let Ok(prev) = cron.find_previous_occurrence(&now, true) else {
        return Ok(None);
    };
    let until = Timestamp(prev.timestamp_millis()).add(duration);
    Ok((until > Timestamp(now.timestamp_millis())).then_some(until))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_window_covering_now_is_in_progress_until_its_end() {
        // Sunday 2026-11-22 09:30 UTC; window every Sunday 08:00 for 3h.
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 9, 30, 0).unwrap();
        let until = in_progress("0 0 8 * * Sun", Duration::from_secs(3 * 3600), now)
            .unwrap()
            .unwrap();
        assert_eq!(
            until,
            Timestamp(
                Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0)
                    .unwrap()
                    .timestamp_millis()
            )
        );
    }

    #[test]
    fn a_finished_or_future_window_is_not_in_progress() {
        let after = Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 1).unwrap();
        assert_eq!(
            in_progress("0 0 8 * * Sun", Duration::from_secs(3 * 3600), after).unwrap(),
            None
        );
        let before = Utc.with_ymd_and_hms(2026, 11, 22, 7, 59, 59).unwrap();
        assert_eq!(
            in_progress("0 0 8 * * Sun", Duration::from_secs(3 * 3600), before).unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn jobs_fire_and_send_events() {
        let (tx, mut rx) = mpsc::channel(8);
        let m = MaintenanceConfig {
            name: "every-second".into(),
            cron: "* * * * * *".into(),
            duration: crate::config::Dur::from_secs(60),
        };
        let cal = Calendar::start(&[m], &[], tx).await.unwrap();
        // The first event reports the window already in progress at start;
        // the second comes from the scheduled job (real time: the scheduler
        // polls every 500 ms; generous bound).
        let first = rx.recv().await.unwrap();
        assert!(matches!(first, Event::MaintenanceStarted { .. }));
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("job fired")
            .unwrap();
        match ev {
            Event::MaintenanceStarted { name, until } => {
                assert_eq!(name, "every-second");
                assert!(until > Timestamp::now());
            }
            other => panic!("unexpected {other:?}"),
        }
        cal.shutdown().await;
    }
}
