//! Endpoint rules: https everywhere except loopback, and per-preset host pins.

use std::net::IpAddr;
use url::Url;

/// True for `localhost`, `127.0.0.0/8` and `::1`.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Checks that an endpoint may receive secrets: `https`, or `http` on a loopback
/// host; and, when `allowed_hosts` is not empty, a host on the list (an entry
/// `x.ai` also allows its subdomains). Loopback hosts are always allowed so that
/// tests and local development can point any preset at a local server. Called at
/// start-up for configured endpoints and again before every use of a discovered
/// one, so a hostile discovery document can never receive the refresh token.
pub fn check_endpoint(url: &Url, allowed_hosts: &[String]) -> Result<(), String> {
    let loopback = is_loopback_host(url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "refusing plain http to {}: tokens may only travel over https (http is allowed for loopback hosts only); use an https:// URL",
                url.host_str().unwrap_or("?")
            ))
        }
        other => return Err(format!("unsupported URL scheme {other:?}; use https://")),
    }
    if loopback || allowed_hosts.is_empty() {
        return Ok(());
    }
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let ok = allowed_hosts.iter().any(|allowed| {
        let allowed = allowed.to_ascii_lowercase();
        host == allowed || host.ends_with(&format!(".{allowed}"))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "host {host} is not one this provider may use (allowed: {}); add it to `allowed_hosts` in the config only if you trust it",
            allowed_hosts.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_subdomains_only() {
        let allowed = vec!["x.ai".to_string()];
        let ok = |u: &str| check_endpoint(&Url::parse(u).unwrap(), &allowed);
        assert!(ok("https://auth.x.ai/token").is_ok());
        assert!(ok("https://x.ai/token").is_ok());
        assert!(ok("https://evilx.ai/token").is_err());
        assert!(ok("https://x.ai.evil.com/token").is_err());
        assert!(ok("http://127.0.0.1:5/token").is_ok());
        assert!(ok("ftp://x.ai/").is_err());
    }
}
