//! A real OpenID Connect provider for the tests: the certified `oidc-provider` package on the
//! machine's Node.js (`tests/oidc-provider/provider.mjs`, its packages installed by
//! `deploy/test.sh` with `npm ci`).

use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the provider is started with.
#[derive(Debug, Clone)]
pub struct OidcOptions {
    /// The audience (resource indicator) of the API's access tokens.
    pub audience: String,
    /// The claims added to the access tokens, as JSON by account or client id (`"*"`: any).
    pub claims: serde_json::Value,
    /// The redirect URIs of the web inbox's client, `followups-web`.
    pub redirect_uris: Vec<String>,
    /// How long an access token lives (10 minutes by default).
    pub access_token_ttl: Duration,
}

impl Default for OidcOptions {
    fn default() -> Self {
        Self {
            audience: "api://followups".into(),
            claims: serde_json::json!({}),
            redirect_uris: Vec::new(),
            access_token_ttl: Duration::from_secs(600),
        }
    }
}

/// A running provider on a free loopback port; stopped when dropped. Its signing keys are
/// new at every start, so [`OidcProvider::restart`] rotates them.
#[derive(Debug)]
pub struct OidcProvider {
    /// The Node.js process (`None` while stopped).
    child: Option<Child>,
    /// Its port: the issuer is `http://127.0.0.1:<port>`.
    port: u16,
    /// What it was started with.
    options: OidcOptions,
}

impl OidcProvider {
    /// Starts a provider on a free port; panics with a clear message when it cannot.
    pub fn start(options: OidcOptions) -> Self {
        Self::start_on(crate::free_port(), options)
    }

    /// The same on `port` (from [`crate::free_port`]: a test that must name the issuer before
    /// the provider can start, because the provider must know the address of the service).
    pub fn start_on(port: u16, options: OidcOptions) -> Self {
        let mut provider = Self {
            child: None,
            port,
            options,
        };
        provider.restart();
        provider
    }

    /// The issuer URL (`FOLLOWUP_OIDC_ISSUER`).
    pub fn issuer(&self) -> String {
        issuer_on(self.port)
    }

    /// Stops it, and starts it again on the same port with new signing keys.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/oidc-provider"
        ));
        assert!(dir.join("node_modules/oidc-provider").is_dir(), "{MISSING}");
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .env("PORT", self.port.to_string())
            .env("AUDIENCE", &self.options.audience)
            .env("CLAIMS", self.options.claims.to_string())
            .env("REDIRECT_URIS", self.options.redirect_uris.join(","))
            .env(
                "ACCESS_TOKEN_TTL",
                self.options.access_token_ttl.as_secs().to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(MISSING);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the OpenID provider exited ({status}); {MISSING}");
            }
            assert!(
                Instant::now() < deadline,
                "the OpenID provider did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// An access token for client `client` (`tests-rs256` or `tests-es256`) and `resource`
    /// (the audience), by the client credentials grant.
    pub async fn client_token(&self, client: &str, resource: &str) -> String {
        let response: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/token", self.issuer()))
            .basic_auth(client, Some("secret"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "followups"),
                ("resource", resource),
            ])
            .send()
            .await
            .expect("the provider's token endpoint")
            .json()
            .await
            .expect("a token response");
        response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token: {response}"))
            .to_owned()
    }
}

/// The issuer of a provider on `port`.
pub fn issuer_on(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const MISSING: &str = "the OpenID provider of the tests needs Node.js and its packages: \
    `npm ci --prefix tests/oidc-provider` (deploy/test.sh runs it)";
