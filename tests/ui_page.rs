//! The workbench page at `/ui` through the real server with auth on: served without a token
//! (it holds no data), from the binary, with a strict content security policy; the API it calls
//! still needs the token.

mod support;

use support::layers::{TOKEN, settings, start_core};

#[tokio::test]
async fn the_page_and_its_assets_are_served_without_a_token_and_the_api_still_needs_one() {
    let core = start_core(settings()).await;
    let http = reqwest::Client::new();
    for (path, content_type, marker) in [
        (
            "/ui",
            "text/html; charset=utf-8",
            "<title>innerloop workbench</title>",
        ),
        ("/ui/", "text/html; charset=utf-8", "id=\"run-form\""),
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "EventSource",
        ),
        ("/ui/style.css", "text/css; charset=utf-8", "#lineage"),
    ] {
        let response = http.get(core.edge(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        let body = response.text().await.unwrap();
        assert!(body.contains(marker), "{path}");
        // The SVG namespace is a name, not a fetch; anything else would be an external URL.
        let body = body.replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "no external URL in {path}"
        );
    }
    let denied = http.get(core.edge("/v1/admin/jobs")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let allowed = http
        .get(core.edge("/v1/admin/jobs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let other = http.get(core.edge("/ui/secret")).send().await.unwrap();
    assert_eq!(other.status(), 401, "only the page's own paths are public");
    core.stop.cancel();
    core.task.await.unwrap().unwrap();
}
