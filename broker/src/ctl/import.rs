//! `brokerctl import [FILE|-]`: hand existing tokens to the broker.
//!
//! For adopting a login made by another tool: the broker persists the tokens and
//! from then on is the only one spending the refresh token. The input is the
//! JSON of an OAuth token response (or anything shaped like it). Errors name the
//! file and the field, never a value: the values are secrets.

use super::{exit, output, Global};
use crate::capped_read::read_capped;
use clap::Args;
use oauth_broker_client::proto::ImportTokens;
use oauth_broker_client::SecretString;
use serde_json::{Map, Value};
use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

/// Hand existing tokens (JSON with at least "refresh_token") to the broker.
#[derive(Debug, Args)]
#[command(after_help = "\
The input is a JSON object. Required: \"refresh_token\". Optional: \"access_token\",
\"expires_in\" (seconds from now) or \"expires_at\" (unix seconds), \"id_token\",
\"scope\" (a space-separated string or an array), \"token_type\", \"account_id\".
Other fields are ignored. After a successful import, delete the file: the broker
now owns the refresh token, and another copy spent elsewhere would be reused.")]
pub struct ImportArgs {
    /// JSON file with the tokens; `-` or nothing reads standard input.
    #[arg(value_name = "FILE|-")]
    pub file: Option<PathBuf>,
    /// Import the ChatGPT login of Codex CLI from its auth.json (default
    /// $CODEX_HOME/auth.json, else ~/.codex/auth.json).
    #[arg(long, value_name = "PATH", num_args = 0..=1, conflicts_with = "file")]
    pub codex: Option<Option<PathBuf>>,
    /// Print `{"imported":true,"expires_at":UNIX|null}` instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

/// Largest input accepted; token files are a few KiB.
const MAX_INPUT: u64 = 1024 * 1024;

/// Runs the subcommand.
pub fn run(global: &Global, args: &ImportArgs) -> ExitCode {
    if let Some(path) = &args.codex {
        return run_codex(global, args, path.as_ref());
    }
    let (source, bytes) = match read_input(args.file.as_ref()) {
        Ok(input) => input,
        Err(err) => return exit::fail_with(exit::OTHER, err),
    };
    let tokens = match parse(&source, &bytes, SystemTime::now()) {
        Ok(tokens) => tokens,
        Err(err) => return exit::fail_with(exit::OTHER, err),
    };
    drop(bytes);
    match global
        .connect()
        .and_then(|mut client| client.import(tokens))
    {
        Ok(expires_at) => {
            if let Some(path) = args.file.as_ref().filter(|path| path.as_os_str() != "-") {
                // A second copy of a rotating refresh token is exactly what the
                // broker exists to prevent.
                eprintln!(
                    "brokerctl: the broker now owns these tokens; delete {} so that nothing else spends the refresh token",
                    path.display()
                );
            }
            print_imported(expires_at, args.json)
        }
        Err(err) => exit::fail(&err),
    }
}

/// `--codex [PATH]`: read Codex CLI's auth.json, import, and say what the user
/// must do so that Codex CLI stops spending the same refresh token.
fn run_codex(global: &Global, args: &ImportArgs, path: Option<&PathBuf>) -> ExitCode {
    let path = match path {
        Some(path) => path.clone(),
        None => match super::import_codex::default_path() {
            Ok(path) => path,
            Err(why) => return exit::fail_with(exit::USAGE, why),
        },
    };
    let (source, bytes) = match read_input(Some(&path)) {
        Ok(input) => input,
        Err(err) => {
            return exit::fail_with(
                exit::OTHER,
                format_args!(
                    "{err} (Codex CLI keeps its login in $CODEX_HOME/auth.json, default ~/.codex/auth.json; pass another path with --codex PATH)"
                ),
            )
        }
    };
    let tokens = match super::import_codex::parse(&bytes) {
        Ok(tokens) => tokens,
        Err(why) => return exit::fail_with(exit::OTHER, InputError::new(&source, why)),
    };
    drop(bytes);
    let mut client = match global.connect() {
        Ok(client) => client,
        Err(err) => return exit::fail(&err),
    };
    if let Ok(status) = client.status() {
        if status.provider != "openai-codex" {
            exit::report(format_args!(
                "warning: this broker serves the {} provider, but a Codex CLI login belongs to OpenAI (preset openai-codex); importing anyway",
                status.provider
            ));
        }
    }
    match client.import(tokens) {
        Ok(expires_at) => {
            eprint!("{}", super::import_codex::warning(&path));
            print_imported(expires_at, args.json)
        }
        Err(err) => exit::fail(&err),
    }
}

/// Prints the outcome of a successful import, as JSON or as [`message`].
fn print_imported(expires_at: Option<SystemTime>, json: bool) -> ExitCode {
    let text = if json {
        let expires_at = expires_at.map(output::unix_secs);
        format!(
            "{}\n",
            serde_json::json!({"imported": true, "expires_at": expires_at})
        )
    } else {
        message(expires_at, SystemTime::now())
    };
    exit::print(&text)
}

/// The success line.
pub fn message(expires_at: Option<SystemTime>, now: SystemTime) -> String {
    match expires_at {
        Some(at) => format!(
            "imported; access token valid until {}\n",
            output::absolute_and_relative(output::unix_secs(at), output::unix_secs(now))
        ),
        None => "imported; the broker will refresh the access token before first use\n".into(),
    }
}

/// Reads the file (or stdin) and names the source for error messages.
fn read_input(file: Option<&PathBuf>) -> Result<(String, Vec<u8>), InputError> {
    let (source, read) = match file.filter(|path| path.as_os_str() != "-") {
        Some(path) => {
            let source = path.display().to_string();
            let file = std::fs::File::open(path).map_err(|e| InputError::new(&source, e))?;
            let read = read_capped(file, MAX_INPUT).map_err(|e| InputError::new(&source, e))?;
            (source, read)
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("brokerctl: reading token JSON from standard input (end with Ctrl-D)");
            }
            let source = "standard input".to_string();
            let read =
                read_capped(stdin.lock(), MAX_INPUT).map_err(|e| InputError::new(&source, e))?;
            (source, read)
        }
    };
    match read {
        Some(bytes) => Ok((source, bytes)),
        None => Err(InputError::content(
            &source,
            format!("larger than {MAX_INPUT} bytes; not a token file"),
        )),
    }
}

/// A problem with the input, printed as `<source>: <message> (hint: …)`.
/// Problems with the content carry a hint about the expected shape; problems
/// reading the file do not.
#[derive(Debug, PartialEq, Eq)]
pub struct InputError {
    source: String,
    message: String,
    about_content: bool,
}

impl InputError {
    /// The file could not be read.
    fn new(source: &str, message: impl fmt::Display) -> Self {
        InputError {
            source: source.to_string(),
            message: message.to_string(),
            about_content: false,
        }
    }

    /// The file was read but its content is not usable.
    fn content(source: &str, message: impl fmt::Display) -> Self {
        InputError {
            about_content: true,
            ..InputError::new(source, message)
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)?;
        if self.about_content {
            f.write_str(" (hint: expected a JSON object with at least \"refresh_token\"; see `brokerctl import --help`)")?;
        }
        Ok(())
    }
}

/// Parses token JSON into what the broker imports. `now` turns `expires_in`
/// into an absolute expiry.
pub fn parse(source: &str, bytes: &[u8], now: SystemTime) -> Result<ImportTokens, InputError> {
    let err = |message: String| InputError::content(source, message);
    // Parse into a `Value` and check fields by hand: serde's own messages may
    // quote the offending value, which here would be a token.
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        err(format!(
            "not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(object) = value else {
        return Err(err("not a JSON object".into()));
    };
    let refresh_token = string(&object, "refresh_token")
        .map_err(err)?
        .ok_or_else(|| err("missing field \"refresh_token\"".into()))?;
    let expires_at = match (
        number(&object, "expires_at").map_err(err)?,
        number(&object, "expires_in").map_err(err)?,
    ) {
        // Some tools write milliseconds (JavaScript's Date.now()); no token
        // expires after the year 5138, so larger values must be milliseconds.
        (Some(at), _) if at >= 100_000_000_000 => Some(at / 1000),
        (Some(at), _) => Some(at),
        (None, Some(expires_in)) => Some(output::unix_secs(now).saturating_add(expires_in)),
        (None, None) => None,
    };
    Ok(ImportTokens {
        refresh_token: SecretString::from(refresh_token),
        access_token: string(&object, "access_token")
            .map_err(err)?
            .map(SecretString::from),
        expires_at,
        id_token: string(&object, "id_token")
            .map_err(err)?
            .map(SecretString::from),
        scope: scope(&object).map_err(err)?,
        token_type: string(&object, "token_type").map_err(err)?,
        account_id: string(&object, "account_id").map_err(err)?,
    })
}

/// An optional string field; `null` and `""` count as absent.
fn string(object: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("field \"{field}\" must be a string")),
    }
}

/// An optional non-negative whole number of seconds (a numeric string or a
/// fractional number is accepted too; fractions are dropped).
fn number(object: &Map<String, Value>, field: &str) -> Result<Option<u64>, String> {
    let wrong = || format!("field \"{field}\" must be a non-negative number of seconds");
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(n), _) => Ok(Some(n)),
            (None, Some(f)) if f >= 0.0 && f.is_finite() => Ok(Some(f as u64)),
            _ => Err(wrong()),
        },
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| wrong()),
        Some(_) => Err(wrong()),
    }
}

/// `scope` as a space-separated string or an array of strings.
fn scope(object: &Map<String, Value>) -> Result<Option<String>, String> {
    let wrong = || "field \"scope\" must be a string or an array of strings".to_string();
    match object.get("scope") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            Ok(Some(s.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|s| !s.is_empty()))
        }
        Some(Value::Array(items)) => {
            let scopes = items
                .iter()
                .map(|item| item.as_str().ok_or_else(wrong))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(scopes.join(" ")).filter(|s| !s.is_empty()))
        }
        Some(_) => Err(wrong()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_client::ExposeSecret;
    use std::time::{Duration, UNIX_EPOCH};

    const NOW: u64 = 1_700_000_000;

    fn parse_str(json: &str) -> Result<ImportTokens, InputError> {
        parse(
            "tokens.json",
            json.as_bytes(),
            UNIX_EPOCH + Duration::from_secs(NOW),
        )
    }

    fn error_text(json: &str) -> String {
        parse_str(json).unwrap_err().to_string()
    }

    #[test]
    fn full_token_response() {
        let tokens = parse_str(
            r#"{"refresh_token":"rt-1","access_token":"at-1","expires_in":3600,
                "id_token":"id-1","scope":"openid  offline_access","token_type":"Bearer",
                "account_id":"acct-1","unknown":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(tokens.refresh_token.expose_secret(), "rt-1");
        assert_eq!(tokens.access_token.unwrap().expose_secret(), "at-1");
        assert_eq!(tokens.id_token.unwrap().expose_secret(), "id-1");
        assert_eq!(tokens.expires_at, Some(NOW + 3600));
        assert_eq!(tokens.scope.as_deref(), Some("openid offline_access"));
        assert_eq!(tokens.token_type.as_deref(), Some("Bearer"));
        assert_eq!(tokens.account_id.as_deref(), Some("acct-1"));
    }

    #[test]
    fn refresh_token_alone_is_enough() {
        let tokens = parse_str(r#"{"refresh_token":"rt"}"#).unwrap();
        assert!(tokens.access_token.is_none() && tokens.id_token.is_none());
        assert_eq!(tokens.expires_at, None);
        assert_eq!(tokens.scope, None);
    }

    #[test]
    fn expiry_forms() {
        let at = |json: &str| parse_str(json).unwrap().expires_at;
        assert_eq!(
            at(r#"{"refresh_token":"r","expires_at":1700001234}"#),
            Some(1_700_001_234)
        );
        assert_eq!(
            at(r#"{"refresh_token":"r","expires_at":1700001234567}"#),
            Some(1_700_001_234)
        );
        assert_eq!(
            at(r#"{"refresh_token":"r","expires_at":"1700001234"}"#),
            Some(1_700_001_234)
        );
        assert_eq!(
            at(r#"{"refresh_token":"r","expires_in":59.9}"#),
            Some(NOW + 59)
        );
        // expires_at wins over expires_in.
        assert_eq!(
            at(r#"{"refresh_token":"r","expires_at":5,"expires_in":10}"#),
            Some(5)
        );
        assert_eq!(at(r#"{"refresh_token":"r","expires_in":null}"#), None);
    }

    #[test]
    fn scope_as_array() {
        let tokens = parse_str(r#"{"refresh_token":"r","scope":["openid","email"]}"#).unwrap();
        assert_eq!(tokens.scope.as_deref(), Some("openid email"));
        let tokens = parse_str(r#"{"refresh_token":"r","scope":[]}"#).unwrap();
        assert_eq!(tokens.scope, None);
    }

    #[test]
    fn empty_strings_count_as_absent() {
        let tokens =
            parse_str(r#"{"refresh_token":"r","access_token":"","id_token":null}"#).unwrap();
        assert!(tokens.access_token.is_none() && tokens.id_token.is_none());
        assert!(error_text(r#"{"refresh_token":""}"#).contains("missing field \"refresh_token\""));
    }

    #[test]
    fn errors_name_the_file_and_field() {
        assert_eq!(
            error_text(r#"{"access_token":"at-SECRET"}"#),
            "tokens.json: missing field \"refresh_token\" (hint: expected a JSON object with at least \"refresh_token\"; see `brokerctl import --help`)"
        );
        assert!(error_text("[1]").starts_with("tokens.json: not a JSON object"));
        assert!(error_text("{\n  \"refresh_token\": \"r\",\n  oops\n}")
            .starts_with("tokens.json: not valid JSON (line 3, column 3)"));
        assert!(error_text(r#"{"refresh_token":"r","expires_in":-5}"#)
            .contains("field \"expires_in\" must be a non-negative number of seconds"));
        assert!(error_text(r#"{"refresh_token":"r","scope":[1]}"#)
            .contains("field \"scope\" must be a string or an array of strings"));
        assert!(error_text(r#"{"refresh_token":["r"]}"#)
            .contains("field \"refresh_token\" must be a string"));
    }

    #[test]
    fn errors_never_echo_values() {
        for json in [
            r#"{"refresh_token":"r","expires_in":"rt-SECRET-1"}"#,
            r#"{"refresh_token":"r","expires_at":{"v":"rt-SECRET-1"}}"#,
            r#"{"refresh_token":"r","scope":["rt-SECRET-1", 3]}"#,
            r#"{"refresh_token":"rt-SECRET-1" "access_token":"x"}"#,
            r#"{"refresh_token":"rt-SECRET-1\q"}"#,
            r#""rt-SECRET-1""#,
        ] {
            let text = error_text(json);
            assert!(!text.contains("SECRET"), "{text}");
        }
        let tokens = parse_str(r#"{"refresh_token":"rt-SECRET-1"}"#).unwrap();
        assert!(!format!("{tokens:?}").contains("SECRET"));
    }

    #[test]
    fn success_messages() {
        let now = UNIX_EPOCH + Duration::from_secs(NOW);
        assert_eq!(
            message(Some(now + Duration::from_secs(3600)), now),
            "imported; access token valid until 2023-11-14 23:13:20 UTC (in 1h 00m)\n"
        );
        assert_eq!(
            message(None, now),
            "imported; the broker will refresh the access token before first use\n"
        );
    }
}
