//! The benchmark tool runs end to end with tiny counts: every scenario answers, with non-zero
//! throughput and no errors. No timing is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sessiond_bench::{Options, plot, run};

#[test]
fn every_scenario_runs_and_the_report_renders() {
    let o = Options::tiny();
    let report = run(&o).unwrap();
    for scenario in [
        "ceiling-get",
        "whoami",
        "whoami-cold",
        "ceiling-post",
        "introspect",
        "introspect-cold",
        "login",
        "refresh",
        "logout",
        "mix",
    ] {
        for &c in &o.concurrencies {
            let r = report
                .row(scenario, c)
                .unwrap_or_else(|| panic!("no {scenario} at c={c}"));
            assert!(r.ok > 0 && r.rps > 0.0, "{scenario} c={c}: {r:?}");
            assert_eq!(r.errors, 0, "{scenario} c={c}: {:?}", r.first_error);
        }
    }
    assert!(
        report
            .baselines
            .iter()
            .all(|b| b.ops > 0 && b.per_sec > 0.0)
    );
    let starvation = report.starvation.as_ref().unwrap();
    assert!(starvation.login_rps > 0.0 && starvation.loaded_whoami_rps > 0.0);
    let scale = report.scale.as_ref().unwrap();
    assert_eq!(scale.rows.len(), 3);
    assert!(scale.rows.iter().all(|r| r.rps > 0.0 && r.errors == 0));
    assert!(scale.bytes_per_session > 0.0);
    // whoami, introspection, login and refresh at the lowest and the highest concurrency,
    // Keycloak's refresh and login, the leak check, starvation, scale.
    assert_eq!(report.targets.len(), 11);
    let leak = report.leak.as_ref().unwrap();
    assert!(leak.requests.iter().all(|&n| n > 0) && leak.rss_after.iter().all(|&r| r > 0));
    assert!(report.rss_start > 0 && report.rss_end > 0);

    let md = report.markdown();
    for needle in [
        "| whoami |",
        "| introspect |",
        "| whoami-cold |",
        "| introspect-cold |",
        "argon2 c=1",
        "sqlite group insert c=4",
        "| login |",
        "| refresh |",
        "| logout |",
        "| mix |",
    ] {
        assert!(md.contains(needle), "{needle} missing from\n{md}");
    }
    let png = tempfile::NamedTempFile::with_suffix(".png").unwrap();
    plot::draw(&report, png.path()).unwrap();
    let bytes = std::fs::read(png.path()).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
}

/// The login-memory measurement runs with a small burst: every login of it is a 401 that ran
/// Argon2 with pooled memory, and the report renders.
#[test]
fn the_login_memory_measurement_runs() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = sessiond_bench::memory::login_memory(
        2,
        dir.path(),
        &rt,
        8,
        std::time::Duration::from_millis(10),
    )
    .unwrap();
    assert_eq!(m.not_401, 0, "{m:?}");
    assert!(
        (1..=m.hash_concurrency).contains(&m.buffers_after_burst),
        "{m:?}"
    );
    assert!(m.rss_before > 0 && m.rss_after_burst > 0 && m.rss_after_idle > 0);
    let md = m.markdown();
    assert!(
        md.contains("## Login memory") && md.contains("| after the burst"),
        "{md}"
    );
}
