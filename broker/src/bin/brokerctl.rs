//! `brokerctl`: administer the oauth-broker daemon and get tokens from it.
//! Everything lives in [`oauth_broker::ctl`].

fn main() -> std::process::ExitCode {
    oauth_broker::ctl::main()
}
