//! [`Browser`]: a minimal user agent that walks the authorization server's
//! own HTML pages the way a person in a browser would.
//!
//! Why not call some admin API to approve the login: the login must go
//! through the server's real pages (user-code entry and confirmation, login,
//! consent), with the server's cookies, CSRF tokens and redirects, so that
//! what the broker receives is exactly what a user's browser would produce.
//! The pages are simple server-rendered forms, so a cookie jar, a redirect
//! follower and a form reader are all a browser needs here; JavaScript is only
//! used by the server to auto-submit forms, which we submit ourselves.

use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// Limit of one HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed for one navigation.
const MAX_REDIRECTS: usize = 20;
/// Forms submitted for one login.
const MAX_FORMS: usize = 12;

/// One loaded page.
#[derive(Debug, Clone)]
pub struct Page {
    /// Where the page came from (after redirects).
    pub url: Url,
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
    /// Every URL visited on the way, in order (redirect hops included).
    pub visited: Vec<Url>,
}

/// A form read from a page.
#[derive(Debug, Clone)]
pub struct Form {
    /// Absolute URL the form submits to.
    pub action: Url,
    /// `get` or `post`.
    pub method: String,
    /// Fields in document order: (name, type, value).
    pub fields: Vec<(String, String, String)>,
}

/// A cookie-keeping, redirect-following user agent.
pub struct Browser {
    http: reqwest::Client,
    // (host:port, path, name) -> value
    cookies: BTreeMap<(String, String, String), String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with an empty cookie jar.
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            cookies: BTreeMap::new(),
        }
    }

    /// Opens `url` and follows redirects.
    pub async fn open(&mut self, url: &str) -> Page {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("not a URL: {url}: {e}"));
        self.navigate(url, None, Vec::new()).await
    }

    /// Submits `form` and follows redirects.
    pub async fn submit(&mut self, form: &Form) -> Page {
        let pairs: Vec<(String, String)> = form
            .fields
            .iter()
            .map(|(n, _, v)| (n.clone(), v.clone()))
            .collect();
        if form.method == "get" {
            let mut url = form.action.clone();
            url.query_pairs_mut().extend_pairs(&pairs);
            self.navigate(url, None, Vec::new()).await
        } else {
            self.navigate(form.action.clone(), Some(pairs), Vec::new())
                .await
        }
    }

    /// Completes a login at the authorization server starting at `start`:
    /// submits every form on the way (the device code's auto-submit and
    /// confirmation forms, the login form with `login` as the user name,
    /// the consent form) until a page without a form, which it returns.
    /// `visited` tells where the browser went (e.g. the broker's redirect).
    pub async fn complete_login(&mut self, start: &str, login: &str) -> Page {
        let mut page = self.open(start).await;
        let mut visited = page.visited.clone();
        for _ in 0..MAX_FORMS {
            let Some(mut form) = read_form(&page) else {
                page.visited = visited;
                return page;
            };
            for (name, kind, value) in form.fields.iter_mut() {
                match (name.as_str(), kind.as_str()) {
                    ("login", _) => *value = login.to_string(),
                    (_, "password") => *value = "interop-password".to_string(),
                    _ => {}
                }
            }
            page = self.submit(&form).await;
            visited.extend(page.visited.iter().cloned());
        }
        panic!(
            "the login at {start} did not end after {MAX_FORMS} forms; last page {} (HTTP {}):\n{}",
            page.url,
            page.status,
            excerpt(&page.body)
        );
    }

    async fn navigate(
        &mut self,
        mut url: Url,
        mut form: Option<Vec<(String, String)>>,
        mut visited: Vec<Url>,
    ) -> Page {
        for _ in 0..MAX_REDIRECTS {
            visited.push(url.clone());
            let mut request = match &form {
                Some(pairs) => self.http.post(url.clone()).form(pairs),
                None => self.http.get(url.clone()),
            };
            if let Some(cookie) = self.cookie_header(&url) {
                request = request.header(reqwest::header::COOKIE, cookie);
            }
            let resp = request.send().await.unwrap_or_else(|e| {
                panic!("{} {url}: {e}", if form.is_some() { "POST" } else { "GET" })
            });
            self.store_cookies(&url, &resp);
            let status = resp.status();
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_else(|| panic!("{url} answered {status} without a Location"));
                url = url
                    .join(location)
                    .unwrap_or_else(|e| panic!("bad Location {location:?} from {url}: {e}"));
                // 301/302/303 turn a POST into a GET, as browsers do.
                if status != reqwest::StatusCode::TEMPORARY_REDIRECT
                    && status != reqwest::StatusCode::PERMANENT_REDIRECT
                {
                    form = None;
                }
                continue;
            }
            let body = resp.text().await.unwrap_or_default();
            return Page {
                url,
                status: status.as_u16(),
                body,
                visited,
            };
        }
        panic!("more than {MAX_REDIRECTS} redirects, last {url}");
    }

    fn cookie_header(&self, url: &Url) -> Option<String> {
        let origin = origin(url);
        let path = url.path();
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|((o, p, _), _)| *o == origin && path_matches(path, p))
            .map(|((_, _, name), value)| format!("{name}={value}"))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn store_cookies(&mut self, url: &Url, resp: &reqwest::Response) {
        for header in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            let mut parts = text.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|kv| kv.split_once('=')) else {
                continue;
            };
            let mut path = "/".to_string();
            let mut expired = false;
            for attr in parts {
                let (key, val) = attr.split_once('=').unwrap_or((attr, ""));
                match key.to_ascii_lowercase().as_str() {
                    "path" if val.starts_with('/') => path = val.to_string(),
                    "max-age" if val.trim().starts_with(['0', '-']) => expired = true,
                    // Cookie deletion is sent as an expiry in 1970.
                    "expires" if val.contains("1970") => expired = true,
                    _ => {}
                }
            }
            let key = (origin(url), path, name.to_string());
            if expired {
                self.cookies.remove(&key);
            } else {
                self.cookies.insert(key, value.to_string());
            }
        }
    }
}

fn origin(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

/// RFC 6265 section 5.1.4 path matching.
fn path_matches(request: &str, cookie: &str) -> bool {
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with('/') || request[cookie.len()..].starts_with('/')))
}

/// The first form of a page with its fields, or `None` if the page has none.
pub fn read_form(page: &Page) -> Option<Form> {
    let body = &page.body;
    let start = body.find("<form")?;
    let end = body[start..]
        .find("</form>")
        .map(|e| start + e)
        .unwrap_or(body.len());
    let open_tag_end = start + body[start..].find('>')?;
    let open_tag = &body[start..=open_tag_end];
    let action = attribute(open_tag, "action").unwrap_or_default();
    let method = attribute(open_tag, "method")
        .unwrap_or_else(|| "get".to_string())
        .to_ascii_lowercase();
    let action = page
        .url
        .join(&action)
        .unwrap_or_else(|e| panic!("form action {action:?} on {}: {e}", page.url));
    let mut fields = Vec::new();
    let mut rest = &body[open_tag_end..end];
    while let Some(i) = rest.find("<input") {
        let tag_end = rest[i..].find('>').map(|e| i + e).unwrap_or(rest.len() - 1);
        let tag = &rest[i..=tag_end];
        if let Some(name) = attribute(tag, "name") {
            let kind = attribute(tag, "type").unwrap_or_else(|| "text".to_string());
            let value = attribute(tag, "value").unwrap_or_default();
            fields.push((name, kind.to_ascii_lowercase(), value));
        }
        rest = &rest[tag_end + 1..];
    }
    Some(Form {
        action,
        method,
        fields,
    })
}

/// The unescaped value of `name="…"` in one tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let mut search = tag;
    loop {
        let i = search.find(name)?;
        let before_ok = i == 0
            || search[..i]
                .chars()
                .last()
                .is_some_and(|c| c.is_whitespace());
        let after = &search[i + name.len()..];
        if before_ok {
            if let Some(value) = after.strip_prefix("=\"") {
                let close = value.find('"')?;
                return Some(unescape(&value[..close]));
            }
            if let Some(value) = after.strip_prefix("='") {
                let close = value.find('\'')?;
                return Some(unescape(&value[..close]));
            }
        }
        search = after;
    }
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2F;", "/")
        .replace("&#x3D;", "=")
        .replace("&#x60;", "`")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The start of a page body for failure messages.
pub fn excerpt(body: &str) -> String {
    body.chars().take(2000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_form_with_escaped_values() {
        let page = Page {
            url: Url::parse("http://127.0.0.1:1/device").unwrap(),
            status: 200,
            body: r#"<form id="f" method="post" action="/device"><input type="hidden" name="xsrf" value="a&amp;b"/>
<input type="hidden" name="user_code" value="AB&#x27;CD"/><input required type="password" name="password" ></form>"#
                .into(),
            visited: vec![],
        };
        let form = read_form(&page).unwrap();
        assert_eq!(form.action.as_str(), "http://127.0.0.1:1/device");
        assert_eq!(form.method, "post");
        assert_eq!(
            form.fields,
            vec![
                ("xsrf".into(), "hidden".into(), "a&b".into()),
                ("user_code".into(), "hidden".into(), "AB'CD".into()),
                ("password".into(), "password".into(), String::new()),
            ]
        );
    }

    #[test]
    fn cookie_paths() {
        assert!(path_matches("/interaction/abc", "/interaction/abc"));
        assert!(path_matches("/interaction/abc/login", "/interaction/abc"));
        assert!(!path_matches("/interaction/abcd", "/interaction/abc"));
        assert!(path_matches("/anything", "/"));
    }
}
