//! Data-driven plan tests: each `cases/NAME.toml` (directory, rules, Grafana state, ledger, policy) must plan
//! exactly the text in `cases/NAME.plan`. Run with `UPDATE_EXPECT=1` to rewrite the expectations after a
//! deliberate change, then review the diff.

mod support;

use std::path::Path;

use support::{Case, apply_model};

fn check(path: &Path) -> Result<(), String> {
    let case = Case::parse(&std::fs::read_to_string(path).map_err(|e| e.to_string())?);
    let plan = case.plan();
    let text = plan.to_text();
    // Determinism: planning again gives the same bytes.
    assert_eq!(
        text,
        case.plan().to_text(),
        "{}: plan is not deterministic",
        path.display()
    );
    let expected_path = path.with_extension("plan");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&expected_path, &text).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(&expected_path)
        .map_err(|e| format!("{}: {e} (run with UPDATE_EXPECT=1)", expected_path.display()))?;
    if expected != text {
        return Err(format!(
            "{}\n--- expected\n{expected}--- actual\n{text}",
            path.display()
        ));
    }
    // Applying the plan converges: a second plan (same scope) over the resulting state is empty (unless refused).
    if !plan.breaker.tripped && plan.removals_withheld.is_none() {
        let mut observed = case.observed();
        let mut ledger = case.ledger();
        apply_model(&plan, &mut observed, &mut ledger);
        let desired = idsync_mapping::map_snapshot(&case.snapshot(), &case.rules());
        let policy = case.policy();
        let again = idsync_plan::plan(idsync_plan::PlanInput {
            source: "ldap",
            desired: &desired,
            observed: &observed,
            ledger: &ledger,
            policy: &policy,
            withhold_removals: None,
            scope: case.scope.as_deref(),
        });
        if !again.is_empty() {
            return Err(format!(
                "{}: second plan not empty:\n{}",
                path.display(),
                again.to_text()
            ));
        }
    }
    Ok(())
}

#[test]
fn plan_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("cases dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "expected the case files");
    let failures: Vec<String> = paths.iter().filter_map(|p| check(p).err()).collect();
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
