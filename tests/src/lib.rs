//! Test support for oauth-broker.
//!
//! * [`fake_server`] — a fake OAuth 2.0 authorization server on a real loopback
//!   port that behaves like the strict real ones (rotating single-use refresh
//!   tokens, reuse detection that revokes the whole family, device flow, PKCE,
//!   both error shapes, fault injection down to dropped TCP connections).
//! * [`fake_chatgpt`] — a fake ChatGPT backend on an HTTPS loopback port (with a
//!   throw-away CA) that checks bearer tokens against the fake authorization
//!   server, for running the real Codex CLI and SDKs offline.
//! * [`fake_upstream`] — a fake API upstream (plain HTTP on loopback) for the
//!   broker's header-injecting proxy: records each request's bearer token,
//!   streams held SSE events, echoes WebSocket upgrades.
//! * [`netns`] — runs a real tool whose URLs are fixed (Hermes Agent) in a
//!   private network namespace whose hostnames lead to the fakes;
//! * [`fake_anthropic`] — a fake Anthropic (Messages API and token endpoint)
//!   served inside private network namespaces where Anthropic's host names
//!   are loopback, for running the real Claude Code offline.
//! * [`ssh_host`] — a "remote host" over real OpenSSH on a loopback port, for
//!   forwarding the broker's socket with `ssh -R`;
//! * [`harness`] — starts the real `brokerd` binary in a throw-away environment
//!   for end-to-end tests, and runs `brokerctl` against it.
//! * [`bench`] — the benchmark behind the README's "Performance" table
//!   (`cargo run --release -p oauth-broker-tests --bin bench`);
//! * [`storm_demo`] — N programs sharing one login with and without the broker
//!   (`cargo run --release -p oauth-broker-tests --bin storm-demo`), on
//!   [`direct_oauth`], the refresh-it-yourself client of the status quo;
//! * [`binaries`] — finding (and building) `brokerd`/`brokerctl` for those two;
//! * [`tools`] — the real outside tools some tests drive (oidc-provider, Codex
//!   CLI, Claude Code, openai-python, Hermes Agent, systemd's tools, python3,
//!   git), installed on first use.
//!
//! The fake servers and the harness exist so that the end-to-end tests in
//! `broker/tests/` can assert exact
//! facts ("exactly one refresh per access-token lifetime", "zero reuse
//! detections") against something that punishes a wrong broker the way a real
//! server would, without any network access beyond loopback.

pub mod bench;
pub mod binaries;
pub mod direct_oauth;
pub mod fake_anthropic;
pub mod fake_chatgpt;
pub mod fake_copilot;
pub mod fake_server;
pub mod fake_upstream;
pub mod harness;
pub mod netns;
pub mod ssh_host;
pub mod storm_demo;
pub mod tools;
