//! A real browser for the dashboard's tests: Debian's `chromium`, headless, driven over
//! WebDriver by its `chromedriver` (a process of its own, started here on a free port and killed
//! when the [`Browser`] is dropped). Both come from `apt-get install chromium chromium-driver`
//! (`.ci/run` installs them); missing, a test fails under `CI=true` and is skipped loudly
//! otherwise.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
pub use fantoccini::Locator;
use fantoccini::{Client, ClientBuilder};

/// A headless Chromium session and its chromedriver.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    driver_url: String,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// chromedriver and the browser binary, or why they cannot be used.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    let driver = on_path("chromedriver")
        .ok_or("chromedriver is not on PATH (apt-get install chromium-driver)")?;
    let browser = on_path("chromium")
        .or_else(|| on_path("chromium-browser"))
        .ok_or("chromium is not on PATH (apt-get install chromium)")?;
    Ok((driver, browser))
}

impl Browser {
    /// A headless browser with a `width`×`height` window, or `None` after saying loudly why
    /// `test` is skipped; under `CI=true` a missing browser fails the test instead.
    pub async fn start_or_skip(test: &str, width: u32, height: u32) -> Result<Option<Browser>> {
        Browser::start_with_or_skip(test, width, height, &[]).await
    }

    /// As [`Browser::start_or_skip`], with extra command-line flags for the browser — such as
    /// `--ignore-certificate-errors` for a hub whose own CA the browser does not know (the
    /// hub's TLS is tested elsewhere; this browser only reads its pages).
    pub async fn start_with_or_skip(
        test: &str,
        width: u32,
        height: u32,
        flags: &[&str],
    ) -> Result<Option<Browser>> {
        let (driver, browser) = match tools() {
            Ok(tools) => tools,
            Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("{test}: {why}, and CI=true requires it")
            }
            Err(why) => {
                eprintln!("SKIPPED {test}: {why}");
                return Ok(None);
            }
        };
        Browser::start(&driver, &browser, width, height, flags)
            .await
            .map(Some)
    }

    async fn start(
        driver: &PathBuf,
        browser: &PathBuf,
        width: u32,
        height: u32,
        flags: &[&str],
    ) -> Result<Browser> {
        let address = crate::ports::free_address()?;
        let port = address.rsplit(':').next().unwrap_or_default().to_owned();
        let mut child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", driver.display()))?;
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--lang=en-US",
        ]
        .iter()
        .chain(flags)
        .map(|flag| flag.to_string())
        .collect();
        args.push(format!("--window-size={width},{height}"));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:loggingPrefs".into(),
            serde_json::json!({"browser": "ALL"}),
        );
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": browser,
                "args": args,
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                // chromedriver is not listening yet.
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => {
                    let _ = child.kill();
                    return Err(anyhow::anyhow!(
                        "no browser session from chromedriver: {error}"
                    ));
                }
            }
        };
        Ok(Browser {
            client,
            driver: child,
            driver_url: url,
        })
    }

    /// Opens the dashboard at `page`, signs in with `token` through its form and waits until
    /// the page says who is signed in.
    pub async fn sign_in(&self, page: &str, token: &str, timeout: Duration) -> Result<()> {
        self.client.goto(page).await?;
        self.wait_for("#signin:not([hidden])", timeout).await?;
        self.type_into("#token", token).await?;
        self.click("#signin-form button").await?;
        self.wait_for_text("#who", timeout, |t| t.starts_with("signed in as "))
            .await
            .map(|_| ())
    }

    /// Types `text` into the element matching `selector`.
    pub async fn type_into(&self, selector: &str, text: &str) -> Result<()> {
        let element = self.client.find(Locator::Css(selector)).await?;
        element.send_keys(text).await?;
        Ok(())
    }

    /// Clicks the element matching `selector`.
    pub async fn click(&self, selector: &str) -> Result<()> {
        self.client
            .find(Locator::Css(selector))
            .await?
            .click()
            .await?;
        Ok(())
    }

    /// Waits up to `timeout` for an element matching the CSS `selector`.
    pub async fn wait_for(
        &self,
        selector: &str,
        timeout: Duration,
    ) -> Result<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(timeout)
            .for_element(Locator::Css(selector))
            .await
            .with_context(|| format!("no `{selector}` within {timeout:?}"))
    }

    /// Waits up to `timeout` until the text of the element matching `selector` satisfies
    /// `check`; returns that text.
    pub async fn wait_for_text(
        &self,
        selector: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(selector)).await
                && let Ok(text) = element.text().await
            {
                if check(&text) {
                    return Ok(text);
                }
                last = text;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "`{selector}` never matched within {timeout:?}; last text: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Messages the page logged at level SEVERE (errors, failed loads), from the browser's
    /// log that chromedriver keeps (`POST /session/{id}/se/log`, outside the W3C standard).
    pub async fn console_errors(&self) -> Result<Vec<String>> {
        let id = self
            .client
            .session_id()
            .await?
            .context("no browser session")?;
        let answer = crate::http::request(
            "POST",
            &format!("{}/session/{id}/se/log", self.driver_url),
            &[("content-type", "application/json")],
            br#"{"type": "browser"}"#.to_vec(),
        )
        .await?;
        anyhow::ensure!(
            answer.status == 200,
            "reading the browser's log: {}",
            answer.body
        );
        let logs: serde_json::Value = serde_json::from_str(&answer.body)
            .with_context(|| format!("the browser's log: {}", answer.body))?;
        let entries = logs["value"]
            .as_array()
            .with_context(|| format!("the browser's log holds no entries: {logs}"))?;
        Ok(entries
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .filter_map(|entry| entry["message"].as_str().map(str::to_owned))
            .collect())
    }

    /// Ends the session and stops chromedriver.
    pub async fn close(mut self) -> Result<()> {
        let closed = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        closed.context("closing the browser session")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
