//! One proxied request: check the key, take the current token from the
//! manager's snapshot, rewrite the credential, forward, stream the answer back.
//!
//! On an upstream 401 the token used is reported to the manager exactly as a
//! client's `Unauthorized` request would (one coalesced refresh, bounded per
//! token); a request whose body was kept is then sent once more with the new
//! token, any other gets the 401 (its next request carries the new token).

use super::body::{passthrough, BodyRefusal, ProxyBody, RequestBody};
use super::headers::{is_upgrade, presented_key, rewrite, strip_hop_by_hop};
use super::tunnel;
use super::{preset_headers, refusal, upstream, Instance};
use crate::manager::ServedToken;
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use oauth_broker_proto::ErrorFrame;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Least remaining validity of an injected token: a request is not started
/// with a token about to die in flight.
const MIN_VALID: Duration = Duration::from_secs(10);

/// Serves one request.
pub async fn handle(
    proxy: Arc<Instance>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let Some(key_name) = presented_key(req.headers()).map(|k| proxy.keys.admit(k)) else {
        tracing::info!(listen = %proxy.listen, "proxy: refused a request without a key");
        return Ok(refusal::no_key());
    };
    let Some(key_name) = key_name else {
        tracing::info!(listen = %proxy.listen, "proxy: refused a request with an unknown or revoked key");
        return Ok(refusal::bad_key());
    };
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut body = match RequestBody::prepare(
        body,
        &parts.headers,
        proxy.config.max_body(),
        proxy.config.replay_body(),
    )
    .await
    {
        Ok(body) => body,
        Err(BodyRefusal::TooLarge { cap }) => return Ok(refusal::too_large(cap)),
        Err(BodyRefusal::Unreadable) => return Ok(refusal::unreadable()),
    };
    let mut token = match current_token(&proxy).await {
        Ok(token) => token,
        Err(frame) => return Ok(refusal::no_token(frame)),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut retried = false;
    let mut response = loop {
        let base = match proxy.upstream.base(&token.grant.metadata) {
            Ok(base) => base,
            Err(why) => return Ok(refusal::upstream(&why)),
        };
        let uri = match upstream::target(&base, &path_and_query) {
            Ok(uri) => uri,
            Err(why) => return Ok(refusal::upstream(&why)),
        };
        let mut headers = parts.headers.clone();
        let extra = preset_headers::extra_headers(&proxy.preset, &token, &proxy.headers);
        if let Err(why) = rewrite(&mut headers, token.access_token(), &extra, upgrade) {
            return Ok(refusal::upstream(&why));
        }
        let mut outgoing = Request::new(body.for_attempt());
        *outgoing.method_mut() = parts.method.clone();
        *outgoing.uri_mut() = uri;
        *outgoing.version_mut() = Version::HTTP_11;
        *outgoing.headers_mut() = headers;
        let answer = match proxy.client.request(outgoing).await {
            Ok(answer) => answer,
            Err(e) if super::body::cut_at_cap(&e) => {
                tracing::info!(listen = %proxy.listen, "proxy: a streamed request body exceeded max_body_bytes");
                return Ok(refusal::too_large(proxy.config.max_body()));
            }
            Err(e) => {
                tracing::warn!(listen = %proxy.listen, error = %e, "proxy: upstream request failed");
                return Ok(refusal::upstream(&format!(
                    "the upstream {} could not be reached: {e}",
                    base.host_str().unwrap_or("?")
                )));
            }
        };
        if answer.status() != StatusCode::UNAUTHORIZED || retried {
            break answer;
        }
        // The token was refused: one coalesced refresh (or the newer token).
        tracing::info!(
            listen = %proxy.listen,
            token_id = token.token_id(),
            "proxy: upstream answered 401; reporting the token"
        );
        let newer = proxy.manager.unauthorized(token.token_id()).await;
        match newer {
            Ok(newer) if body.replayable() && newer.token_id() != token.token_id() => {
                token = newer;
                retried = true;
            }
            _ => break answer,
        }
    };
    tracing::debug!(
        listen = %proxy.listen,
        key = %key_name,
        method = %parts.method,
        path = parts.uri.path(),
        status = response.status().as_u16(),
        retried,
        micros = started.elapsed().as_micros() as u64,
        "proxy: forwarded"
    );
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (Some(client_side), true) = (client_upgrade, switching) {
        let upstream_side = hyper::upgrade::on(&mut response);
        tunnel::spawn(
            client_side,
            upstream_side,
            proxy.listen.to_string(),
            &proxy.tasks,
            proxy.shutdown.clone(),
        );
    }
    let (mut head, body) = response.into_parts();
    strip_hop_by_hop(&mut head.headers, switching);
    Ok(Response::from_parts(head, passthrough(body)))
}

/// The token to inject: the snapshot's when it is good for a while yet, else
/// the manager's answer (which may refresh or wait).
async fn current_token(proxy: &Instance) -> Result<Arc<ServedToken>, ErrorFrame> {
    let ready = proxy
        .snapshots
        .borrow()
        .ready_token(proxy.clock.read(), MIN_VALID)
        .cloned();
    match ready {
        Some(token) => Ok(token),
        None => proxy
            .manager
            .token(MIN_VALID)
            .await
            .map_err(ErrorFrame::from),
    }
}
