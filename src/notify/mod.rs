//! Notifications: Slack, Microsoft Teams, PagerDuty and generic webhooks.

pub mod config;
