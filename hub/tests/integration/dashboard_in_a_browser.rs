//! The dashboard in a real browser (headless Chromium over WebDriver): a user signs in with a
//! token, reads the overview's counts (equal to the API's), filters the clusters by name, sees
//! prod awaiting approval, reaches its Approve button with the keyboard and approves it with a
//! reason — and the wave really starts and completes on the agents' clusters, recorded as that
//! token's approval, and the page shows it through its event stream — then follows the commit's
//! timeline (counts equal to the API's) to a cluster and to a stage, and signs out, after which
//! the page reads nothing. Every text on the pages it saw is readable (contrast ≥ 4.5:1); the
//! page logs no errors.

use crate::support::admin::admin_token;
use crate::support::rollout;
use crate::support::sync as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_hub::state::rollout::RolloutStatus;
use flotilla_hub::state::source::RevisionRef;
use flotilla_testkit::browser::{Browser, Locator};
use rollout::{RolloutFleet, newest_rollout};

const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
    rollout: {soak: 1s}
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    promoteFrom: dev
    rollout: {approval: manual}
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {release: \"1\", fail: \"false\"}
";

/// How long the page may take to show what the hub's state already holds (it polls every 2 s).
const PAGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_approves_prod_from_the_page_and_signs_out() -> Result<()> {
    support::init_tracing();
    let test = "a_user_signs_in_approves_prod_from_the_page_and_signs_out";
    let Some(browser) = Browser::start_or_skip(test, 1280, 900).await? else {
        return Ok(());
    };
    let (fleet, first) =
        RolloutFleet::start_configured(SPEC, &[&[("env", "dev")], &[("env", "prod")]], |config| {
            config.authenticate = true
        })
        .await?;
    let token = admin_token(&fleet.hub).await?;
    let second = fleet.release("2", None)?;
    let revision = RevisionRef {
        source: "origin".into(),
        commit: second.clone(),
    };
    fleet
        .wait_for("prod's rollout awaiting approval", |s| {
            newest_rollout(s, "prod").is_some_and(|(_, r)| {
                r.to == revision && r.status == RolloutStatus::AwaitingApproval
            })
        })
        .await?;

    let page = format!("http://{}/", fleet.hub().http_address());
    // Nobody is signed in: the page asks for a token and shows no fleet.
    browser.sign_in(&page, &token, PAGE).await?;
    browser
        .wait_for_text("#who", PAGE, |t| t == "signed in as token:initial-admin")
        .await?;
    // The page follows the hub's event stream (no polling): what changes arrives by itself.
    browser
        .wait_for_text("#node", PAGE, |t| t.ends_with(" · live"))
        .await?;

    // The overview counts what the API counts.
    let api: serde_json::Value = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('api/status').then(r => r.json()).then(done);",
            vec![],
        )
        .await?;
    let synced = api["counts"]["sync"]["Synced"].as_u64().unwrap_or(0);
    assert_eq!(synced, 2, "both clusters in sync: {}", api["counts"]);
    browser
        .wait_for_text("#overview tr:last-child td:nth-child(4)", PAGE, |t| {
            t == synced.to_string()
        })
        .await?;
    browser
        .wait_for_text("#overview tr:last-child td:nth-child(3)", PAGE, |t| {
            t == "2"
        })
        .await?;
    // A filter: the hub pages and filters, the page shows what matched.
    browser.type_into("#f-cluster", "sim-1").await?;
    browser
        .wait_for_text("#page-info", PAGE, |t| {
            t.contains("of 1 matching (2 registered)")
        })
        .await?;
    let shown = browser
        .wait_for_text("#stages", PAGE, |t| t.contains("sim-1"))
        .await?;
    assert!(!shown.contains("sim-0"), "{shown}");
    browser
        .client
        .find(Locator::Css("#f-cluster"))
        .await?
        .clear()
        .await?;
    browser
        .wait_for_text("#page-info", PAGE, |t| t.contains("of 2 matching"))
        .await?;

    // prod waits for approval; its Approve button asks for a reason, then approves.
    let approve = browser
        .wait_for(r#"button[data-stage="prod"][data-action="approve"]"#, PAGE)
        .await?;
    // A keyboard user reaches it with Tab and presses Enter.
    drop(approve);
    browser
        .tab_to(r#"button[data-stage="prod"][data-action="approve"]"#, 200)
        .await?;
    browser.press_enter().await?;
    browser.wait_for("dialog#confirm[open]", PAGE).await?;
    let focused = browser
        .client
        .execute("return document.activeElement.id;", vec![])
        .await?;
    assert_eq!(
        focused, "confirm-reason",
        "the dialog takes the focus to its reason"
    );
    // Confirming without a reason is refused by the form itself: nothing is sent.
    browser.click("#confirm-ok").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    browser.wait_for("dialog#confirm[open]", PAGE).await?;
    {
        let state = fleet.hub().node().state();
        let approvals = state
            .audit
            .newest_first()
            .filter(|(_, e)| e.action == "approve")
            .count();
        assert_eq!(approvals, 0, "an approval without a reason went through");
    }
    browser
        .type_into("#confirm-reason", "staging looks good")
        .await?;
    // The README's picture of the dashboard, when asked for (`FLOTILLA_SCREENSHOTS=docs/images`).
    if let Some(dir) = std::env::var_os("FLOTILLA_SCREENSHOTS") {
        let png = browser.client.screenshot().await?;
        std::fs::write(
            std::path::Path::new(&dir).join("dashboard-approve.png"),
            png,
        )?;
    }
    browser.click("#confirm-ok").await?;
    browser.wait_for("dialog#confirm:not([open])", PAGE).await?;

    fleet
        .wait_for("prod to complete release 2", |s| {
            s.stages["prod"].passed.contains(&revision)
        })
        .await?;
    assert_eq!(fleet.release_on(1).await?.as_deref(), Some("2"));
    {
        let state = fleet.hub().node().state();
        let (_, prod) = newest_rollout(&state, "prod").expect("prod rolled out");
        assert_eq!(prod.to, revision);
        let approved = state
            .audit
            .newest_first()
            .map(|(_, e)| e)
            .find(|e| e.action == "approve")
            .expect("an approval in the audit log");
        assert_eq!(approved.actor, "token:initial-admin");
    }
    browser
        .wait_for_text("#overview", PAGE, |t| {
            t.contains("prod") && !t.contains("AwaitingApproval")
        })
        .await?;
    let low = browser.low_contrast(4.5).await?;
    assert!(low.is_empty(), "hard to read on the overview: {low:#?}");

    // The commit's timeline, from its link in the rollouts: both clusters were given it,
    // applied it and are Healthy at it; dev tracked it, prod's promotion was approved.
    browser
        .click(&format!(r##"#rollouts a[href="#/commit/{second}"]"##))
        .await?;
    let timeline = browser
        .wait_for_text("#detail", PAGE, |t| {
            t.contains("2 given · 2 applied · 2 healthy")
        })
        .await?;
    let api: serde_json::Value = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('api/commits/' + arguments[0]).then(r => r.json()).then(done);",
            vec![serde_json::json!(&second[..10])],
        )
        .await?;
    assert_eq!(api["commit"], second.as_str(), "{api}");
    assert_eq!(
        api["counts"],
        serde_json::json!({"given": 2, "applied": 2, "healthy": 2, "failed": 0}),
        "{api}"
    );
    for cluster in api["clusters"].as_array().into_iter().flatten() {
        let (given, applied, healthy) = (
            cluster["givenAt"].as_u64().unwrap_or(0),
            cluster["appliedAt"].as_u64().unwrap_or(0),
            cluster["healthyAt"].as_u64().unwrap_or(0),
        );
        assert!(
            given > 0 && applied >= given && healthy >= applied,
            "given, then applied, then healthy: {cluster}"
        );
    }
    assert!(
        timeline.contains("sim-0") && timeline.contains("sim-1"),
        "{timeline}"
    );
    assert!(
        timeline.contains("promote by token:initial-admin"),
        "prod's pin says who approved it: {timeline}"
    );
    let low = browser.low_contrast(4.5).await?;
    assert!(low.is_empty(), "hard to read on the timeline: {low:#?}");
    if let Some(dir) = std::env::var_os("FLOTILLA_SCREENSHOTS") {
        let png = browser.client.screenshot().await?;
        std::fs::write(
            std::path::Path::new(&dir).join("dashboard-timeline.png"),
            png,
        )?;
    }
    // On to the prod cluster: its bundle, objects and the revisions it was given.
    browser
        .click(r##"#detail a[href="#/cluster/sim-1"]"##)
        .await?;
    let cluster = browser
        .wait_for_text("#detail", PAGE, |t| {
            t.contains("Cluster sim-1") && t.contains("Revisions given")
        })
        .await?;
    assert!(cluster.contains("apps/Deployment app/"), "{cluster}");
    assert!(cluster.contains(&second[..8]), "{cluster}");
    assert!(
        cluster.contains("version "),
        "the agent's version: {cluster}"
    );
    // And to its stage: prod's rollout, every wave done.
    browser.click(r##"#detail a[href="#/stage/prod"]"##).await?;
    let stage = browser
        .wait_for_text("#detail", PAGE, |t| {
            t.contains("Stage prod") && t.contains("Rollout ")
        })
        .await?;
    assert!(
        stage.contains("dev → prod"),
        "its place in the pipeline: {stage}"
    );
    assert!(stage.contains("completed"), "{stage}");
    browser.click(r##"header a[href="#/"]"##).await?;
    browser.wait_for("#detail[hidden]", PAGE).await?;
    // Rolling prod back offers its earlier pins: release 1's commit among them.
    browser
        .click(r#"#overview button[data-stage="prod"][data-action="rollback"]"#)
        .await?;
    browser.wait_for("dialog#confirm[open]", PAGE).await?;
    browser
        .wait_for(
            &format!(r#"#confirm-revisions option[value="{first}"]"#),
            PAGE,
        )
        .await?;
    browser.click("#confirm-cancel").await?;
    browser.wait_for("dialog#confirm:not([open])", PAGE).await?;
    // Everything so far logged no error in the page (the refusals below log their 401s).
    let errors = browser.console_errors().await?;
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");

    // Signing out: the sign-in form again, and the page's reads are refused.
    browser.click("#signout").await?;
    browser.wait_for("#signin:not([hidden])", PAGE).await?;
    // A wrong token is refused, saying why.
    browser.type_into("#token", "flt_nobody_0000").await?;
    browser.click("#signin-form button").await?;
    browser
        .wait_for_text("#signin-error", PAGE, |t| !t.is_empty())
        .await?;
    assert!(
        browser
            .client
            .find(Locator::Css("#signout[hidden]"))
            .await
            .is_ok(),
        "still signed out"
    );
    let status: serde_json::Value = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('api/status').then(r => done(r.status));",
            vec![],
        )
        .await?;
    assert_eq!(status, 401);
    browser.close().await?;
    fleet.shutdown().await;
    Ok(())
}
