//! The caseworkers' web inbox in a real browser: headless Chromium through ChromeDriver
//! (Debian's `chromium` and `chromium-driver`, which `deploy/test.sh` installs when missing),
//! against the whole service in this process; the sign-in with an identity provider against a
//! real one (the `oidc-provider` package on Node.js).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use followup_platform::config::{ClaimNames, OidcSettings};
use followup_store::MIGRATOR;
use followup_testkit::{OidcOptions, OidcProvider};
use followup_tests::start_pipeline;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use sqlx::PgPool;

/// A headless Chromium session, and the ChromeDriver process behind it.
struct Browser {
    client: Client,
    driver: Child,
}

impl Browser {
    async fn start() -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver must be installed (deploy/test.sh installs chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1000", "--lang=da-DK"]
        });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        // ChromeDriver speaks plain HTTP on loopback: no TLS needed.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a headless Chromium session");
        Self { client, driver }
    }

    /// Types `text` into the field `css` (after clearing it).
    async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    async fn select(&self, css: &str, value: &str) {
        self.find(css).await.select_by_value(value).await.unwrap();
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Waits (20 s at most) until an element matching `css` shows text containing `expected`.
    async fn sees(&self, css: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut texts = Vec::new();
            for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
                if let Ok(text) = element.text().await {
                    if text.contains(expected) {
                        return;
                    }
                    texts.push(text);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {css} shows {expected:?}; seen: {texts:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot as `<name>.png` in the folder `FOLLOWUP_SCREENSHOTS` names, when it
    /// is set (to look at the pages a test went through).
    async fn screenshot(&self, name: &str) {
        if let Some(dir) = std::env::var_os("FOLLOWUP_SCREENSHOTS") {
            let png = self.client.screenshot().await.unwrap();
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }

    async fn go(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_caseworker_signs_in_creates_assigns_shares_completes_and_sees_news_arrive_live(
    pool: PgPool,
) {
    let pipeline = start_pipeline(pool, true).await;
    let browser = Browser::start().await;
    let app = format!("{}/app/", pipeline.base);

    // Sign in through the development sign-in, which says so on screen.
    browser.go(&app).await;
    browser
        .sees("#dev-banner", "Udviklings-login er slået til")
        .await;
    browser.fill("#login-sub", "anne").await;
    browser.fill("#login-inst", "KP").await;
    // By keyboard: Enter in the last field signs in.
    browser.fill("#login-teams", "admissions\u{E007}").await;
    browser.sees("h1", "Mine opfølgninger").await;
    browser.sees("#who", "anne · KP").await;

    // Create a task: a CPR number is refused next to the field, with the reason. The form
    // opens with its first field focused, for the keyboard.
    browser.click("nav a[href='#/new']").await;
    browser.find("#subject").await;
    let focused = browser
        .client
        .execute("return document.activeElement.id", vec![])
        .await
        .unwrap();
    assert_eq!(focused, json!("subject"));
    browser
        .fill("#subject", "Ring til ansøger 010203-1234 om optagelse")
        .await;
    browser.click("main form button[type=submit]").await;
    browser.sees("#err-subject", "CPR").await;
    browser
        .fill("#subject", "Ring til ansøger om optagelse")
        .await;
    browser
        .fill("#description", "Ansøgeren mangler at sende eksamensbevis.")
        .await;
    browser.click("main form button[type=submit]").await;
    browser.sees("h1", "Ring til ansøger om optagelse").await;
    browser.sees("dd[data-field='Ejer']", "Bruger anne").await;

    // Assign it to the team (Tildel), share it with a colleague (Del), complete it.
    browser.select("#assign-type", "team").await;
    browser.fill("#owner", "admissions").await;
    browser.click("form:has(#owner) button[type=submit]").await;
    browser
        .sees("dd[data-field='Ejer']", "Team admissions")
        .await;
    browser.fill("#principal", "bo").await;
    browser.select("#access", "write").await;
    // Nobody has seen bo: the page asks before it shares with an id it does not know.
    browser
        .click("form:has(#principal) button[type=submit]")
        .await;
    browser
        .sees(
            "form:has(#principal) .form-error",
            "findes ikke i kataloget",
        )
        .await;
    browser
        .click("form:has(#principal) button[type=submit]")
        .await;
    browser
        .sees("dd[data-field='Delt med']", "Bruger bo (Skrive)")
        .await;
    browser
        .client
        .find(Locator::XPath("//button[text()='Markér som fuldført']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.sees("dd[data-field='Status']", "Behandlet").await;
    browser
        .sees(".notice", "afsluttet og kan ikke ændres")
        .await;
    assert!(
        browser
            .client
            .find_all(Locator::XPath("//button[text()='Markér som fuldført']"))
            .await
            .unwrap()
            .is_empty(),
        "a finished follow-up offers no actions"
    );
    browser
        .sees("ol.timeline", "Markeret som fuldført af Bruger anne")
        .await;

    // A failed job raises an exception for the team: it appears without a reload.
    browser.click("nav a[href='#/']").await;
    browser.sees("h1", "Mine opfølgninger").await;
    pipeline.publish_example("applicant_transfer.failed").await;
    browser
        .sees(
            ".toast",
            "Ny exception: Fejl ved overførsel af ansøgning APP-2026-104712",
        )
        .await;
    // The message links to the exception.
    let href = browser
        .find(".toast a")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(href.starts_with("#/f/"), "{href}");

    // Subscribe to structure date changes, and see the notification arrive live.
    browser.click("nav a[href='#/subscriptions']").await;
    browser.select("#filter-field", "education").await;
    browser.fill("#filter", "Sygeplejerskeuddannelsen").await;
    browser.click("main form button[type=submit]").await;
    browser
        .sees("main table", "Uddannelse = Sygeplejerskeuddannelsen")
        .await;
    browser.click("nav a[href='#/notifications']").await;
    pipeline
        .publish_example("education_structure.dates_changed")
        .await;
    browser
        .sees(
            ".toast",
            "Ny notifikation: Startdato for Sygeplejerskeuddannelsen",
        )
        .await;
    browser.sees("#unread", "1").await;
    browser.sees("ul.inbox", "(Ulæst").await;
    browser
        .client
        .find(Locator::XPath("//button[text()='Markér som læst']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.sees("ul.inbox", "(Læst").await;

    // Two more: "Markér alle som læst" reads both.
    let changed: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!(
            "{}/education_structure.dates_changed.json",
            followup_tests::EXAMPLES
        ))
        .unwrap(),
    )
    .unwrap();
    let another = |n: u32| {
        let mut event = changed.clone();
        event["id"] = json!(format!("{}-{n}", changed["id"].as_str().unwrap()));
        event
    };
    pipeline.publish_cloudevent(&another(1)).await;
    pipeline.publish_cloudevent(&another(2)).await;
    browser.sees("#unread", "2").await;
    browser.click("nav a[href='#/notifications']").await;
    browser.sees("ul.inbox", "(Ulæst").await;
    browser.click("#read-all").await;
    browser
        .sees(".toast", "Alle notifikationer er markeret som læst")
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser
        .find("ul.inbox")
        .await
        .text()
        .await
        .unwrap()
        .contains("(Ulæst")
    {
        assert!(Instant::now() < deadline, "unread notifications are left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Opening one reads it; a notification is not closed like a task.
    pipeline.publish_cloudevent(&another(3)).await;
    browser.sees("#unread", "1").await;
    browser.click(".toast:last-child a").await;
    browser
        .sees("h1", "Startdato for Sygeplejerskeuddannelsen")
        .await;
    assert!(
        browser
            .client
            .find_all(Locator::XPath("//button[text()='Luk opgave']"))
            .await
            .unwrap()
            .is_empty(),
        "a notification offers no Luk opgave"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !browser
        .find("#unread")
        .await
        .text()
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "opening the notification did not read it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    browser.client.clone().close().await.unwrap();
    pipeline.stop().await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn without_the_development_setting_the_sign_in_asks_for_a_token(pool: PgPool) {
    let pipeline = start_pipeline(pool, false).await;
    let browser = Browser::start().await;

    browser.go(&format!("{}/app/", pipeline.base)).await;

    browser
        .sees("label[for='login-token']", "Adgangstoken")
        .await;
    let banner = browser.find("#dev-banner").await;
    assert!(
        !banner.is_displayed().await.unwrap(),
        "no development banner"
    );
    let minted = pipeline
        .http
        .post(format!("{}/app/dev-token", pipeline.base))
        .json(&json!({"sub": "anne", "inst": "KP"}))
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 404, "no token for anyone");
    browser.client.clone().close().await.unwrap();
    pipeline.stop().await;
}

/// Follows the provider's own pages (its development sign-in, then its consent page) as a
/// person would: any user name and password sign in as that user.
async fn sign_in_at_the_provider(browser: &Browser, user: &str) {
    browser.fill("input[name='login']", user).await;
    browser.fill("input[name='password']", "any password").await;
    browser.click("button[type='submit']").await;
    browser.sees("button[type='submit']", "Continue").await;
    browser.click("button[type='submit']").await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_caseworker_signs_in_with_the_institutions_provider_and_lands_on_the_deep_link(
    pool: PgPool,
) {
    // The issuer must be known before the service starts, and the service's address before
    // the provider starts (its redirect URI): the provider's port is chosen first.
    let port = followup_testkit::free_port();
    let pipeline = followup_tests::start_pipeline_with(pool, |settings| {
        settings.oidc = Some(OidcSettings {
            issuer: followup_testkit::issuer_on(port),
            audience: "api://followups".into(),
            claims: ClaimNames {
                teams: "groups".into(),
                ..ClaimNames::default()
            },
            institution: None,
            client_id: Some("followups-web".into()),
            scopes: "openid profile offline_access followups".into(),
        });
    })
    .await;
    let app = format!("{}/app/", pipeline.base);
    let _provider = OidcProvider::start_on(
        port,
        OidcOptions {
            claims: json!({"*": {"inst": "KP", "groups": ["admissions"], "roles": ["caseworker"]}}),
            redirect_uris: vec![app.clone()],
            // Short-lived, so that the page renews it while the test watches.
            access_token_ttl: Duration::from_secs(65),
            ..OidcOptions::default()
        },
    );
    // A task of team admissions, opened by its link while signed out.
    let created: serde_json::Value = pipeline
        .http
        .post(format!("{}/v1/followups", pipeline.base))
        .bearer_auth(followup_tests::token("birgit", "KP", "admissions"))
        .json(&json!({"kind": "task", "subject": "Tjek optagelsesbrev",
                      "owner": {"type": "team", "id": "admissions"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();

    let browser = Browser::start().await;
    browser.go(&format!("{app}#/f/{id}")).await;
    sign_in_at_the_provider(&browser, "anna").await;
    browser.sees("h1", "Tjek optagelsesbrev").await;
    browser.sees("#who", "anna · KP").await;
    let url = browser.client.current_url().await.unwrap();
    assert!(url.as_str().ends_with(&format!("#/f/{id}")), "{url}");
    let banner = browser.find("#dev-banner").await;
    assert!(
        !banner.is_displayed().await.unwrap(),
        "no development banner"
    );

    // Before the access token expires, the page renews it with the refresh token.
    let token = |b: &Browser| {
        let client = b.client.clone();
        async move {
            client
                .execute("return sessionStorage.getItem('followups.token')", vec![])
                .await
                .unwrap()
        }
    };
    let first = token(&browser).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while token(&browser).await == first {
        assert!(
            Instant::now() < deadline,
            "the access token was not renewed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    browser.sees("#who", "anna · KP").await;

    // A new tab on another deep link signs in through the provider's session, no prompt.
    let tab = browser.client.new_window(true).await.unwrap();
    browser.client.switch_to_window(tab.handle).await.unwrap();
    browser.go(&format!("{app}#/list")).await;
    browser.sees("main", "Tjek optagelsesbrev").await;
    browser.sees("#who", "anna · KP").await;

    // Signing out signs out at the provider too, and lands on the sign-in page.
    browser.click("#logout").await;
    browser.sees("button", "Yes, sign me out").await;
    browser.click("button[value='yes']").await;
    browser
        .sees("#login-provider", "Log ind med institutionens login")
        .await;
    browser.client.clone().close().await.unwrap();
    pipeline.stop().await;
}

/// Provisions `resource` (a SCIM User or Group) into KP's directory; its SCIM id.
async fn provision(
    http: &reqwest::Client,
    base: &str,
    kind: &str,
    resource: serde_json::Value,
) -> String {
    let response = http
        .post(format!("{base}/scim/v2/{kind}"))
        .bearer_auth(SCIM_TOKEN)
        .header("Content-Type", "application/scim+json")
        .body(resource.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: serde_json::Value = response.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

const SCIM_TOKEN: &str = "kp-scim-token-for-the-browser-test-0123456789";

#[sqlx::test(migrator = "MIGRATOR")]
async fn tildel_and_del_pick_from_the_directory_and_show_names_instead_of_ids(pool: PgPool) {
    let pipeline = followup_tests::start_pipeline_with(pool, |settings| {
        settings.dev_login = true;
        settings.scim_tokens = vec![(
            followup_domain::InstitutionId::parse("KP").unwrap(),
            SCIM_TOKEN.into(),
        )];
        settings.esas_links = vec![(
            "application".into(),
            "https://esas.kp.dk/main.aspx?etn=application&id={id}".into(),
        )];
    })
    .await;
    let (http, base) = (&pipeline.http, pipeline.base.as_str());
    let anna = provision(
        http,
        base,
        "Users",
        json!({"userName": "anna@kp.dk", "displayName": "Anna Jensen"}),
    )
    .await;
    provision(
        http,
        base,
        "Users",
        json!({"userName": "bo@kp.dk", "displayName": "Bo Hansen"}),
    )
    .await;
    provision(
        http,
        base,
        "Groups",
        json!({"displayName": "Optagelse", "externalId": "admissions",
        "members": [{"value": anna}]}),
    )
    .await;

    let browser = Browser::start().await;
    browser.go(&format!("{base}/app/")).await;
    browser.fill("#login-sub", "anna@kp.dk").await;
    browser.fill("#login-inst", "KP").await;
    browser.fill("#login-teams", "\u{E007}").await;
    browser.sees("h1", "Mine opfølgninger").await;
    // Her token names no team: the directory's does, by its name.
    browser.sees("main li", "Optagelse (team)").await;

    browser.click("nav a[href='#/new']").await;
    browser
        .fill("#subject", "Kontakt ansøger om manglende bilag")
        .await;
    browser.select("#regarding-type", "application").await;
    browser.fill("#regarding", "APP-2026-1").await;
    browser.click("main form button[type=submit]").await;
    browser.sees("dd[data-field='Ejer']", "Anna Jensen").await;
    // What it is about, in Danish, linked to the record in ESAS.
    browser
        .sees("dd[data-field='Vedrører']", "Ansøgning APP-2026-1")
        .await;
    let link = browser.find("dd[data-field='Vedrører'] a").await;
    assert_eq!(
        link.attr("href").await.unwrap().as_deref(),
        Some("https://esas.kp.dk/main.aspx?etn=application&id=APP-2026-1")
    );

    // Tildel: typing suggests the directory's teams by name.
    browser.select("#assign-type", "team").await;
    browser.fill("#owner", "Opt").await;
    // The suggestions are a datalist, which WebDriver does not render as text: read them.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let options = browser
            .client
            .execute(
                "return [...document.querySelectorAll('#owner-options option')].map(o => `${o.value}=${o.textContent}`)",
                vec![],
            )
            .await
            .unwrap();
        if options == json!(["admissions=Optagelse"]) {
            break;
        }
        assert!(Instant::now() < deadline, "suggested: {options}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.fill("#owner", "admissions").await;
    browser.click("form:has(#owner) button[type=submit]").await;
    browser
        .sees("dd[data-field='Ejer']", "Optagelse (team)")
        .await;

    // Del with a typo: asked first, then refused by the service, in Danish, at the field.
    browser.fill("#principal", "bo@kp.dkk").await;
    browser
        .click("form:has(#principal) button[type=submit]")
        .await;
    browser
        .sees(
            "form:has(#principal) .form-error",
            "findes ikke i kataloget",
        )
        .await;
    browser
        .click("form:has(#principal) button[type=submit]")
        .await;
    browser
        .sees("#err-principal", "Findes ikke i institutionens katalog")
        .await;
    browser.fill("#principal", "bo@kp.dk").await;
    browser
        .click("form:has(#principal) button[type=submit]")
        .await;
    browser
        .sees("dd[data-field='Delt med']", "Bo Hansen (Læse)")
        .await;
    browser.sees("ol.timeline", "Tildelt af Anna Jensen").await;
    // The history says what changed, with names.
    browser
        .sees(
            "ol.timeline .changes",
            "Ejer: Anna Jensen → Optagelse (team)",
        )
        .await;
    browser
        .sees("ol.timeline .changes", "Delt med Bo Hansen (Læse)")
        .await;
    // A note, in the notes and the history; a CPR number in one is refused at the field.
    browser.fill("#text", "Ansøger 010203-1234 ringede").await;
    browser.click("form:has(#text) button[type=submit]").await;
    browser.sees("#err-text", "CPR").await;
    browser
        .fill("#text", "Ansøgeren sender bilaget i morgen.")
        .await;
    browser.click("form:has(#text) button[type=submit]").await;
    browser
        .sees("ul.notes", "Ansøgeren sender bilaget i morgen.")
        .await;
    browser.sees("ul.notes", "Anna Jensen").await;
    browser
        .sees("ol.timeline", "Note tilføjet af Anna Jensen")
        .await;
    browser
        .screenshot("detail-with-names-changes-and-notes")
        .await;

    browser.client.clone().close().await.unwrap();
    pipeline.stop().await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_card_of_the_overblik_opens_a_list_of_as_many_follow_ups_as_it_counts(pool: PgPool) {
    let pipeline = start_pipeline(pool, true).await;
    let (http, base) = (&pipeline.http, pipeline.base.as_str());
    let anne = followup_tests::token("anne", "KP", "admissions");
    let create = |body: serde_json::Value| {
        let anne = anne.clone();
        async move {
            let response = http
                .post(format!("{base}/v1/followups"))
                .bearer_auth(&anne)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let day = chrono::Duration::days(1);
    let at = |offset: chrono::Duration| {
        (chrono::Utc::now() + offset).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    // Mine, due this week; the team's, overdue; the team's notification; one finished.
    create(json!({"kind": "task", "subject": "Min opgave", "due": at(day * 2)})).await;
    create(
        json!({"kind": "task", "subject": "Teamets opgave", "due": at(-day),
                  "owner": {"type": "team", "id": "admissions"}}),
    )
    .await;
    create(json!({"kind": "notification", "subject": "Til teamet",
                  "owner": {"type": "team", "id": "admissions"}}))
    .await;
    let done = create(json!({"kind": "task", "subject": "Færdig"})).await;
    let completed = http
        .post(format!(
            "{base}/v1/followups/{}/complete",
            done["id"].as_str().unwrap()
        ))
        .bearer_auth(&anne)
        .send()
        .await
        .unwrap();
    assert_eq!(completed.status(), 200);
    // The team's exception, from a failed job.
    pipeline.publish_example("applicant_transfer.failed").await;

    let browser = Browser::start().await;
    browser.go(&format!("{base}/app/")).await;
    browser.fill("#login-sub", "anne").await;
    browser.fill("#login-inst", "KP").await;
    browser.fill("#login-teams", "admissions\u{E007}").await;
    browser.sees("h1", "Mine opfølgninger").await;
    // Wait for the exception to be counted.
    let cards = loop {
        browser.go(&format!("{base}/app/#/")).await;
        browser.sees("h1", "Mine opfølgninger").await;
        let cards = browser
            .client
            .execute("return [...document.querySelectorAll('a.card')].map(a => [a.getAttribute('href'), a.querySelector('.n').textContent])", vec![])
            .await
            .unwrap();
        if cards[0][1] == "1" {
            break cards;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        cards
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[1].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["1", "2", "1", "2", "1", "1"],
        "exceptions, tasks, notifications, overdue (the team's task and the exception), due this week, unread: {cards}"
    );
    for card in cards.as_array().unwrap() {
        let (href, n) = (card[0].as_str().unwrap(), card[1].as_str().unwrap());
        if href == "#/notifications" {
            continue;
        }
        browser.go(&format!("{base}/app/{href}")).await;
        browser
            .sees("main p[role=status]", &format!("{n} opfølgning"))
            .await;
    }
    browser.screenshot("list-opened-from-a-card").await;

    // The list opens on the open follow-ups, and an empty result says so.
    browser.go(&format!("{base}/app/#/list")).await;
    browser.sees("main p[role=status]", "4 opfølgninger").await;
    browser
        .go(&format!("{base}/app/#/list?q=findes-ikke"))
        .await;
    browser
        .sees("p.empty", "Ingen opfølgninger matcher filteret")
        .await;
    // Overdue is said in words, not only by colour.
    browser
        .go(&format!("{base}/app/#/list?owner=mine&overdue=true"))
        .await;
    browser.sees("td.overdue", "Overskredet").await;

    browser.client.clone().close().await.unwrap();
    pipeline.stop().await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn no_page_scrolls_sideways_on_a_390_px_wide_phone(pool: PgPool) {
    let pipeline = start_pipeline(pool, true).await;
    let base = pipeline.base.clone();
    let browser = Browser::start().await;
    browser.client.set_window_size(390, 844).await.unwrap();
    let fits = |page: &'static str| {
        let client = browser.client.clone();
        async move {
            let sizes = client
                .execute(
                    "return [document.documentElement.scrollWidth, window.innerWidth]",
                    vec![],
                )
                .await
                .unwrap();
            let (scroll, inner) = (sizes[0].as_u64().unwrap(), sizes[1].as_u64().unwrap());
            assert!(inner <= 400, "the window is {inner} px wide");
            assert!(
                scroll <= inner,
                "{page} is {scroll} px wide in a {inner} px window"
            );
        }
    };
    browser.go(&format!("{base}/app/")).await;
    browser.find("#login-sub").await;
    fits("the sign-in page").await;
    browser
        .fill("#login-sub", "anne-med-et-langt-brugernavn")
        .await;
    browser.fill("#login-inst", "KP").await;
    browser
        .fill("#login-teams", "admissions, studieadministration\u{E007}")
        .await;
    browser.sees("h1", "Mine opfølgninger").await;
    fits("Overblik").await;

    let token = followup_tests::token("anne-med-et-langt-brugernavn", "KP", "admissions");
    let created: serde_json::Value = pipeline
        .http
        .post(format!("{base}/v1/followups"))
        .bearer_auth(&token)
        .json(&json!({"kind": "task", "subject": "Kontrollér eksamensbeviset fra den udenlandske uddannelsesinstitution",
                      "description": "Eksamensbeviset_skal_kontrolleres_mod_den_officielle_liste_over_godkendte_institutioner",
                      "owner": {"type": "team", "id": "admissions"}, "due": "2030-01-01T09:00:00Z"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    browser.go(&format!("{base}/app/#/list")).await;
    browser.sees("main", "Kontrollér eksamensbeviset").await;
    fits("the list").await;
    browser
        .go(&format!(
            "{base}/app/#/f/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    browser.sees("h1", "Kontrollér eksamensbeviset").await;
    fits("a follow-up").await;
    browser.go(&format!("{base}/app/#/new")).await;
    browser.find("#subject").await;
    fits("Opret opgave").await;
    browser.go(&format!("{base}/app/#/notifications")).await;
    browser.sees("h1", "Notifikationer").await;
    fits("Notifikationer").await;
    browser.go(&format!("{base}/app/#/subscriptions")).await;
    browser.find("#filter-field").await;
    browser.select("#filter-field", "education").await;
    browser.fill("#filter", "Sygeplejerskeuddannelsen").await;
    // Messages that came meanwhile cover the bottom of a phone's screen: put them away.
    for close in browser
        .client
        .find_all(Locator::Css(".toast-close"))
        .await
        .unwrap()
    {
        close.click().await.unwrap();
    }
    browser.click("main form button[type=submit]").await;
    browser.sees("main table", "Sygeplejerskeuddannelsen").await;
    fits("Abonnementer").await;
    browser.screenshot("subscriptions-at-390-px").await;

    browser.client.clone().close().await.unwrap();
    pipeline.stop().await;
}
