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

/// The WebDriver codes of the Tab and Enter keys.
const TAB: char = '\u{E004}';
const ENTER: char = '\u{E007}';

/// Measures the WCAG contrast of every visible text against the first opaque background
/// behind it (WCAG 2 relative luminance; semi-transparent colours are taken as opaque).
const CONTRAST_SCRIPT: &str = r#"
const minimum = arguments[0];
const rgb = text => (text.match(/[\d.]+/g) || []).map(Number);
const luminance = ([r, g, b]) => {
  const c = [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
};
const background = element => {
  for (let e = element; e; e = e.parentElement) {
    const colour = getComputedStyle(e).backgroundColor;
    const parts = rgb(colour);
    if (parts.length === 3 || (parts.length === 4 && parts[3] > 0)) return colour;
  }
  return "rgb(255, 255, 255)";
};
const low = [];
for (const element of document.querySelectorAll("body *")) {
  const own = [...element.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent.trim()).join(" ").trim();
  if (!own || element.closest("[hidden], dialog:not([open]), option, script, style") || element.closest(":disabled")) continue;
  const box = element.getBoundingClientRect();
  if (box.width === 0 || box.height === 0) continue;
  const style = getComputedStyle(element);
  if (style.visibility === "hidden" || style.display === "none") continue;
  const fg = luminance(rgb(style.color)), bg = luminance(rgb(background(element)));
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  if (ratio < minimum) low.push(`${ratio.toFixed(2)}: ${style.color} on ${background(element)}: ${own.slice(0, 60)}`);
}
return low;
"#;

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

    /// Clicks the element matching `selector`. A live page may redraw between finding the
    /// element and clicking it (the element is then stale): it is found again, for up to two
    /// seconds.
    pub async fn click(&self, selector: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let clicked = match self.client.find(Locator::Css(selector)).await {
                Ok(element) => element.click().await,
                Err(e) => Err(e),
            };
            match clicked {
                Err(e)
                    if e.is_stale_element_reference() && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => {
                    other?;
                    break;
                }
            }
        }
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

    /// Moves the keyboard focus with the Tab key, as a keyboard user would, until the focused
    /// element matches `selector`; fails after `presses` presses.
    pub async fn tab_to(&self, selector: &str, presses: usize) -> Result<()> {
        for _ in 0..presses {
            let focused = self
                .client
                .execute(
                    "return document.activeElement !== null && document.activeElement.matches(arguments[0]);",
                    vec![serde_json::json!(selector)],
                )
                .await?;
            if focused == serde_json::json!(true) {
                return Ok(());
            }
            self.press(TAB).await?;
        }
        anyhow::bail!("`{selector}` not reached in {presses} presses of Tab")
    }

    /// Presses Enter on the focused element.
    pub async fn press_enter(&self) -> Result<()> {
        self.press(ENTER).await
    }

    /// Presses and releases one key, wherever the focus is.
    async fn press(&self, key: char) -> Result<()> {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client.perform_actions(keys).await?;
        Ok(())
    }

    /// Every piece of visible text (not of a disabled control) whose contrast with the
    /// background behind it is below `minimum` (WCAG's ratio; AA asks 4.5 for body text), each
    /// as `ratio: colour on background: text`.
    pub async fn low_contrast(&self, minimum: f64) -> Result<Vec<String>> {
        let found = self
            .client
            .execute(CONTRAST_SCRIPT, vec![serde_json::json!(minimum)])
            .await?;
        Ok(serde_json::from_value(found)?)
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
