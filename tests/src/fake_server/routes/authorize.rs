//! `GET /oauth/authorize`: the browser half of the authorization-code flow.
//!
//! Why auto-approve: there is no user in a test. The "user" decision is a
//! knob ([`AuthorizeBehavior`](crate::fake_server::AuthorizeBehavior)) and the
//! same logic is callable without HTTP from
//! [`FakeAuthServer::authorize`](crate::fake_server::FakeAuthServer::authorize).

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::App;
use crate::fake_server::authcode::AuthorizeAnswer;
use crate::fake_server::state::Shared;

/// Runs the authorize decision for these query parameters and records it.
pub(crate) fn decide(shared: &Shared, query: BTreeMap<String, String>) -> AuthorizeAnswer {
    shared.update(|i| {
        i.stats.authorize_requests += 1;
        let answer = i.codes.authorize(
            &query,
            i.cfg.authorize_behavior,
            &i.cfg.client_id,
            &i.cfg.default_scope,
            Instant::now(),
        );
        i.authorize_log.push(query);
        answer
    })
}

pub(crate) async fn handle(
    State(app): State<App>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    match decide(&app, query) {
        AuthorizeAnswer::Redirect(location) => {
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
        AuthorizeAnswer::BadRequest(why) => (
            StatusCode::BAD_REQUEST,
            Html(format!(
                "<!DOCTYPE html><html><body><h1>Authorization error</h1><p>{why}</p></body></html>"
            )),
        )
            .into_response(),
    }
}
