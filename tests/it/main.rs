//! latchkey's integration tests, built as one binary (one link per edit):
//! black-box tests against real servers on port 0 with their own data, the
//! store conformance suite, real processes, and headless Chromium.
#![allow(clippy::unwrap_used)]

mod common;
mod support;

mod bad_input;
mod binary;
mod browser;
mod cli;
mod connections;
mod crash;
mod embed;
mod extractors;
mod forward;
mod layers;
mod library;
mod lockout;
mod login;
mod multi_instance;
mod own_users;
mod pages;
mod proxies;
mod proxy_browser;
mod redis_failover;
mod revocation;
mod session;
mod store_conformance;
mod store_outage;
mod timing;
mod usernames;
