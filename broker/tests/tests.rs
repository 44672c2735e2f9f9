//! The broker's end-to-end and reliability tests, as ONE test binary (like
//! ripgrep's `tests/tests.rs`): every file here is a module, so the suite
//! links the dependency tree once instead of once per file. Test names carry
//! the module as a prefix (`cargo test -p oauth-broker --test tests e2e_cli::`).
//!
//! Every test starts the real `brokerd` (and `brokerctl`) through the one
//! fixture in [`common`] against the fake authorization server of the tests
//! crate; `interop` holds the support code of the oidc-provider interop test.

mod common;
mod interop;

mod e2e_bench_smoke;
mod e2e_bind_mount;
mod e2e_busy_retry;
mod e2e_caching_client;
mod e2e_claude_code;
mod e2e_cli;
mod e2e_clock_jumps;
mod e2e_codex_cli;
mod e2e_containers;
mod e2e_copilot_cli;
mod e2e_dialects;
mod e2e_doctor;
mod e2e_file_safety;
mod e2e_forced_refresh_bounds;
mod e2e_hermes;
mod e2e_login_browser;
mod e2e_login_device;
mod e2e_login_presets;
mod e2e_never_lose;
mod e2e_openclaw;
mod e2e_peer_uid;
mod e2e_projection;
mod e2e_proxy;
mod e2e_proxy_clients;
mod e2e_python;
mod e2e_recipes;
mod e2e_refusal_log;
mod e2e_relogin_recovery;
mod e2e_relogin_required;
mod e2e_remote_ssh;
mod e2e_restart;
mod e2e_secrets;
mod e2e_shutdown;
mod e2e_slot_lockout;
mod e2e_state_journal;
mod e2e_storm;
mod e2e_storm_demo;
mod e2e_systemd;
mod e2e_unauthorized;
mod e2e_upstream_faults;
mod interop_oidc_provider;
mod reliability_crash;
mod reliability_disk;
mod reliability_endpoint_faults;
mod reliability_hardening;
mod reliability_socket_abuse;
mod soak;
