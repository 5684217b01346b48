//! The dashboard's HTTP API on a hub that checks tokens: nothing under `/api/` is read without
//! a token; signing in with a token sets an HttpOnly, Secure, SameSite=Strict session cookie and
//! a CSRF cookie; a viewer of one stage sees that stage only and may not act; a write carried by
//! the session cookie needs the CSRF header; an action needs a reason, is checked against the
//! caller's role and audited under its token, as over the Admin API; a revoked token's session
//! stops working; signing out clears both cookies.

use crate::support::admin::{admin_token, client, create, secured_hub};

use anyhow::{Context, Result};
use flotilla_proto::v1::{AdminListAuditRequest, AdminRevokeTokenRequest};
use flotilla_testkit::http::{Answer, request};
use serde_json::Value;

const JSON: (&str, &str) = ("content-type", "application/json");

fn json(answer: &Answer) -> Result<Value> {
    serde_json::from_str(&answer.body).with_context(|| format!("not JSON: {}", answer.body))
}

/// The `name=value` of cookie `name` among the answer's `Set-Cookie` headers, with the whole
/// header.
fn set_cookie<'a>(answer: &'a Answer, name: &str) -> Result<(&'a str, &'a str)> {
    let header = answer
        .set_cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .with_context(|| format!("no {name} cookie in {:?}", answer.set_cookies))?;
    let pair = header.split(';').next().unwrap_or_default();
    Ok((pair, header))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_a_token_and_actions_need_the_role_the_csrf_header_and_a_reason() -> Result<()> {
    let (_repo, hub, _) = secured_hub(|_| {}).await?;
    let root = admin_token(&hub).await?;
    let mut admin = client(&hub, Some(&root)).await?;
    let viewer = create(&mut admin, "dev-viewer", "viewer", &["dev"], 0).await?;
    let deployer = create(&mut admin, "dev-deployer", "deployer", &["dev"], 0).await?;
    let base = format!("http://{}", hub.hub.http_address());
    let url = |path: &str| format!("{base}{path}");

    // Nothing is read without a token; the session says nobody is signed in.
    let answer = request("GET", &url("/api/status"), &[], Vec::new()).await?;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(
        json(&answer)?["message"].as_str().is_some(),
        "{}",
        answer.body
    );
    let nobody = request("GET", &url("/api/session"), &[], Vec::new()).await?;
    assert_eq!(nobody.status, 200, "{}", nobody.body);
    let nobody = json(&nobody)?;
    assert_eq!(nobody["signedIn"], false, "{nobody}");
    assert_eq!(
        nobody["stages"].as_array().map(Vec::len),
        Some(0),
        "{nobody}"
    );
    // The page itself holds no data and loads to ask for a token.
    let page = request("GET", &url("/"), &[], Vec::new()).await?;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Sign in"), "no sign-in form");

    // Signing in takes JSON only, and a real token.
    let form = request(
        "POST",
        &url("/api/session"),
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("token={viewer}").into_bytes(),
    )
    .await?;
    assert_eq!(form.status, 415, "{}", form.body);
    let wrong = request(
        "POST",
        &url("/api/session"),
        &[JSON],
        br#"{"token": "flt_nobody_0000"}"#.to_vec(),
    )
    .await?;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.set_cookies.is_empty(), "{:?}", wrong.set_cookies);

    // A viewer of dev signs in: an HttpOnly session cookie and a readable CSRF cookie.
    let signed = request(
        "POST",
        &url("/api/session"),
        &[JSON],
        serde_json::to_vec(&serde_json::json!({ "token": viewer }))?,
    )
    .await?;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let (session, header) = set_cookie(&signed, "flotilla_session")?;
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(attribute), "{attribute} missing: {header}");
    }
    let (csrf_pair, header) = set_cookie(&signed, "flotilla_csrf")?;
    assert!(!header.contains("HttpOnly"), "the page reads it: {header}");
    assert!(
        header.contains("SameSite=Strict") && header.contains("Secure"),
        "{header}"
    );
    let csrf = csrf_pair
        .split_once('=')
        .map(|(_, v)| v)
        .unwrap_or_default();
    assert_eq!(csrf.len(), 64, "{csrf}");
    let me = json(&signed)?;
    assert_eq!(me["name"], "token:dev-viewer");
    let stages: Vec<&str> = me["stages"]
        .as_array()
        .context("stages")?
        .iter()
        .filter_map(|s| s["stage"].as_str())
        .collect();
    assert_eq!(stages, ["dev"], "a viewer of dev sees dev only: {me}");
    assert_eq!(me["stages"][0]["pause"], false);

    let cookies = format!("{session}; {csrf_pair}");
    let with_session = [("cookie", cookies.as_str())];
    let status = request("GET", &url("/api/status"), &with_session, Vec::new()).await?;
    assert_eq!(status.status, 200, "{}", status.body);
    let status = json(&status)?;
    let clusters: Vec<&str> = status["clusters"]
        .as_array()
        .context("clusters")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(clusters, ["dev-1"], "prod is not the viewer's");

    // The stage's history, for the rollback picker: a viewer of dev reads dev's, not prod's.
    let history = request(
        "GET",
        &url("/api/stages/dev/history"),
        &with_session,
        Vec::new(),
    )
    .await?;
    assert_eq!(history.status, 200, "{}", history.body);
    let history = json(&history)?;
    assert_eq!(history["stage"], "dev", "{history}");
    assert!(
        history["pins"].as_array().is_some_and(|p| !p.is_empty()),
        "{history}"
    );
    let refused = request(
        "GET",
        &url("/api/stages/prod/history"),
        &with_session,
        Vec::new(),
    )
    .await?;
    assert_eq!(refused.status, 403, "{}", refused.body);

    // Detail reads show the viewer only what it may view: dev-1 and dev, not prod's.
    let get = |path: &str| {
        let url = url(path);
        let headers = with_session;
        async move { request("GET", &url, &headers, Vec::new()).await }
    };
    let dev_1 = get("/api/clusters/dev-1").await?;
    assert_eq!(dev_1.status, 200, "{}", dev_1.body);
    let dev_1 = json(&dev_1)?;
    assert_eq!(dev_1["name"], "dev-1", "{dev_1}");
    assert_eq!(dev_1["stage"], "dev", "{dev_1}");
    let given = dev_1["deliveries"].as_array().context("deliveries")?;
    assert_eq!(given.len(), 1, "dev-1 was given the first commit: {dev_1}");
    let commit = given[0]["commit"].as_str().context("a commit")?.to_owned();
    assert!(
        dev_1["objects"].as_array().is_some_and(|o| !o.is_empty()),
        "its objects: {dev_1}"
    );
    for hidden in [
        "/api/clusters/prod-1",
        "/api/clusters/nope",
        "/api/stages/prod",
    ] {
        let answer = get(hidden).await?;
        assert_eq!(answer.status, 404, "{hidden}: {}", answer.body);
    }
    let dev = json(&get("/api/stages/dev").await?)?;
    assert_eq!(dev["name"], "dev", "{dev}");
    assert_eq!(
        dev["pipeline"],
        serde_json::json!(["dev"]),
        "prod is hidden: {dev}"
    );
    assert!(
        dev["pins"].as_array().is_some_and(|p| !p.is_empty()),
        "{dev}"
    );
    // The commit's timeline, named by a prefix: the viewer's stage and clusters only.
    let line = get(&format!("/api/commits/{}", &commit[..8])).await?;
    assert_eq!(line.status, 200, "{}", line.body);
    let line = json(&line)?;
    assert_eq!(line["commit"], commit.as_str(), "{line}");
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(names(&line["stages"]), ["dev"], "{line}");
    assert_eq!(names(&line["clusters"]), ["dev-1"], "{line}");
    for (path, code, says) in [
        ("/api/commits/zz", 400, "hexadecimal"),
        ("/api/commits/ffffffff", 404, "no revision"),
        ("/api/status?sync=Fine", 400, "sync `Fine`"),
        ("/api/status?health=Okay", 400, "health `Okay`"),
        ("/api/status?sort=size", 400, "sort"),
    ] {
        let answer = get(path).await?;
        assert_eq!(answer.status, code, "{path}: {}", answer.body);
        let message = json(&answer)?["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(says), "{path}: {message}");
    }
    // A bundle across the fleet: the clusters with it, counted.
    let bundle = json(&get("/api/status?bundle=app&sort=problems").await?)?;
    assert_eq!(names(&bundle["clusters"]), ["dev-1"], "{bundle}");
    let counted: u64 = bundle["clusterPage"]["counts"]["sync"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    assert_eq!(counted, 1, "{bundle}");
    let none = json(&get("/api/status?bundle=nothing").await?)?;
    assert_eq!(none["clusterPage"]["matched"], 0, "{none}");

    // A viewer may not act, with the CSRF header or without.
    let act = |stage: &str, action: &str, headers: Vec<(&'static str, String)>, body: &str| {
        let url = url(&format!("/api/stages/{stage}/{action}"));
        let body = body.as_bytes().to_vec();
        async move {
            let mut headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if !headers.iter().any(|(k, _)| *k == "content-type") {
                headers.push(JSON);
            }
            request("POST", &url, &headers, body).await
        }
    };
    let reasoned = r#"{"reason": "checking the console"}"#;
    let as_viewer = vec![
        ("cookie", cookies.clone()),
        ("x-flotilla-csrf", csrf.to_owned()),
        ("content-type", "application/json".to_owned()),
    ];
    let denied = act("dev", "pause", as_viewer, reasoned).await?;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(
        denied.body.contains("needs the deployer role"),
        "{}",
        denied.body
    );

    // A deployer of dev, signed in: the session cookie alone does not make a write.
    let signed = request(
        "POST",
        &url("/api/session"),
        &[JSON],
        serde_json::to_vec(&serde_json::json!({ "token": deployer }))?,
    )
    .await?;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let (session, _) = set_cookie(&signed, "flotilla_session")?;
    let (csrf_pair, _) = set_cookie(&signed, "flotilla_csrf")?;
    let csrf = csrf_pair
        .split_once('=')
        .map(|(_, v)| v)
        .unwrap_or_default()
        .to_owned();
    let cookies = format!("{session}; {csrf_pair}");
    let forged = act("dev", "pause", vec![("cookie", cookies.clone())], reasoned).await?;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.body.contains("X-Flotilla-CSRF"), "{}", forged.body);
    let wrong = vec![
        ("cookie", cookies.clone()),
        ("x-flotilla-csrf", "0".repeat(64)),
    ];
    assert_eq!(act("dev", "pause", wrong, reasoned).await?.status, 403);
    let headers = || {
        vec![
            ("cookie", cookies.clone()),
            ("x-flotilla-csrf", csrf.clone()),
        ]
    };
    let unreasoned = act("dev", "pause", headers(), r#"{"reason": " "}"#).await?;
    assert_eq!(unreasoned.status, 400, "{}", unreasoned.body);
    assert!(
        unreasoned.body.contains("give a reason"),
        "{}",
        unreasoned.body
    );
    // Not JSON (what a cross-site form or a no-cors fetch can send): refused before anything.
    let mut plain = headers();
    plain.push(("content-type", "text/plain".to_owned()));
    let plain = act("dev", "pause", plain, reasoned).await?;
    assert_eq!(plain.status, 415, "{}", plain.body);
    let unknown = act("dev", "explode", headers(), reasoned).await?;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let prod = act("prod", "pause", headers(), reasoned).await?;
    assert_eq!(prod.status, 403, "{}", prod.body);
    // Allowed on dev: whether there is a rollout to pause is the rollout state's business.
    let paused = act("dev", "pause", headers(), reasoned).await?;
    assert!(
        paused.status == 200 || paused.status == 409,
        "{}: {}",
        paused.status,
        paused.body
    );

    // Audited under the token, refusals too, as the CLI's calls are.
    let audit = admin
        .list_audit(AdminListAuditRequest::default())
        .await?
        .into_inner();
    let by = |actor: &str| {
        audit
            .events
            .iter()
            .filter(|e| e.actor == actor && e.action == "pause")
            .count()
    };
    assert!(by("token:dev-deployer") >= 2, "{:?}", audit.events);
    assert!(by("token:dev-viewer") >= 1, "{:?}", audit.events);

    // A bearer header needs no CSRF value: no browser sends one by itself.
    let bearer = format!("Bearer {root}");
    let by_header = act("dev", "resume", vec![("authorization", bearer)], reasoned).await?;
    assert_ne!(by_header.status, 403, "{}", by_header.body);
    assert_ne!(by_header.status, 401, "{}", by_header.body);

    // Revoking the token ends its sessions at once.
    admin
        .revoke_token(AdminRevokeTokenRequest {
            name: "dev-deployer".into(),
        })
        .await?;
    let revoked = request(
        "GET",
        &url("/api/status"),
        &[("cookie", cookies.as_str())],
        Vec::new(),
    )
    .await?;
    assert_eq!(revoked.status, 401, "{}", revoked.body);
    let session = request(
        "GET",
        &url("/api/session"),
        &[("cookie", cookies.as_str())],
        Vec::new(),
    )
    .await?;
    let session = json(&session)?;
    assert_eq!(session["signedIn"], false, "{session}");
    assert!(
        session["refused"]
            .as_str()
            .is_some_and(|r| r.contains("revoked")),
        "{session}"
    );

    // Signing out clears both cookies.
    let out = request(
        "DELETE",
        &url("/api/session"),
        &[("cookie", cookies.as_str())],
        Vec::new(),
    )
    .await?;
    assert_eq!(out.status, 204, "{}", out.body);
    for name in ["flotilla_session", "flotilla_csrf"] {
        let (pair, header) = set_cookie(&out, name)?;
        assert_eq!(pair, format!("{name}="));
        assert!(header.contains("Max-Age=0"), "{header}");
    }
    hub.hub.shutdown().await;
    Ok(())
}
