//! The origin side, as docs/integration.md shows it: verifiers written with
//! libraries no one here wrote (Python's PyJWT, Node's jose) accept a live
//! gateway's admission token and reject a tampered one. `.ci/run` installs
//! both (`pip install "PyJWT[crypto]"`, `npm ci` in
//! examples/verify-admission/node).

use std::process::Command;

use serde_json::Value;

use crate::helpers::*;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify-admission");

/// Runs a verifier; its exit status and stdout.
fn verify(program: &str, script: &str, args: &[String]) -> (bool, String) {
    let out = Command::new(program)
        .arg(format!("{EXAMPLES}/{script}"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("invalid admission"),
        "{program} {script} failed to run, not to verify: {stderr}"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_node_verifiers_accept_a_live_token_and_reject_a_tampered_one() {
    let app = spawn_app_with(Backend::Embedded, |s| {
        s.admission.audience = Some("tickets.example".into());
    })
    .await;
    let show = app.create_show(1, 600, 60).await;
    let spot = app.join(show, &app.sign_in("origin-checked").await).await;
    let token = spot.access().to_owned();
    // The same claims naming someone else, under the original signature.
    let mut forged = admission_claims(&token);
    forged["sub"] = "someone-else".into();
    let forged_payload = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string())
    };
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = &forged_payload;
    let tampered = parts.join(".");

    let jwks = format!("{}/.well-known/jwks.json", app.base);
    let args = |token: &str, show: u64| -> Vec<String> {
        [
            "--jwks-url",
            &jwks,
            "--issuer",
            "anteroom",
            "--audience",
            "tickets.example",
            "--show",
            &show.to_string(),
            token,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    for (program, script) in [("python3", "python/verify.py"), ("node", "node/verify.mjs")] {
        let (ok, out) = verify(program, script, &args(&token, show));
        assert!(ok, "{program} accepts the live token");
        let claims: Value = serde_json::from_str(out.trim()).expect("claims as JSON");
        assert_eq!(claims["sub"], "origin-checked", "{program}");
        assert_eq!(claims["show"], show, "{program}");
        let (ok, _) = verify(program, script, &args(&tampered, show));
        assert!(!ok, "{program} rejects the tampered token");
        let (ok, _) = verify(program, script, &args(&token, show + 1));
        assert!(!ok, "{program} rejects a token for another show");
    }
}
