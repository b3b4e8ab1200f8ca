//! Property tests over random small worlds: a plan never removes what idsync does not own (outside
//! authoritative teams), and applying a plan converges (planning again yields nothing).

mod support;

use std::collections::BTreeMap;

use idsync_core::{Change, OrgRole, OwnedFact, login_key};
use proptest::prelude::*;
use support::{Case, CaseDirectoryUser, CaseOrg, CaseTeam, CaseUser, apply_model};

const USERS: [&str; 5] = ["ann", "ben", "cat", "dan", "eve"];
const GROUPS: [&str; 3] = ["cn=g0,dc=x", "cn=g1,dc=x", "cn=g2,dc=x"];
const ROLES: [OrgRole; 4] = [OrgRole::None, OrgRole::Viewer, OrgRole::Editor, OrgRole::Admin];

#[derive(Debug, Clone)]
struct World {
    /// Per user: in directory?, groups bitmask, in Grafana?, org-1 role (index or none), team members bitmask.
    users: Vec<(bool, u8, bool, Option<usize>, u8)>,
    ledger_bits: Vec<u8>,
    authoritative: bool,
}

fn world() -> impl Strategy<Value = World> {
    (
        proptest::collection::vec(
            (
                any::<bool>(),
                0u8..8,
                any::<bool>(),
                proptest::option::of(0usize..4),
                0u8..4,
            ),
            5,
        ),
        proptest::collection::vec(0u8..8, 5),
        any::<bool>(),
    )
        .prop_map(|(users, ledger_bits, authoritative)| World {
            users,
            ledger_bits,
            authoritative,
        })
}

fn case_of(world: &World) -> Case {
    let mut text = String::from("[policy]\nmax_removals_percent = 100.0\n");
    text.push_str(
        "[[group_mappings]]\ngroup_dn = \"cn=g0,dc=x\"\norg_id = 1\norg_role = \"Editor\"\n\
         [[group_mappings]]\ngroup_dn = \"cn=g1,dc=x\"\norg_id = 1\norg_role = \"Viewer\"\ngrafana_admin = true\n",
    );
    text.push_str(&format!(
        "[[teams]]\norg = 1\nteam = \"T0\"\ngroups = [\"cn=g1,dc=x\"]\nauthoritative = {}\n\
         [[teams]]\norg = 1\nteam = \"T1\"\ngroups = [\"cn=g2,dc=x\"]\n",
        world.authoritative
    ));
    let mut case = Case::parse(&text);
    let mut members = BTreeMap::new();
    let mut teams = vec![
        CaseTeam {
            id: 10,
            name: "T0".into(),
            members: vec![],
        },
        CaseTeam {
            id: 11,
            name: "T1".into(),
            members: vec![],
        },
    ];
    let mut ledger = Vec::new();
    for (i, (in_dir, groups, in_grafana, role, team_bits)) in world.users.iter().enumerate() {
        let login = USERS[i];
        if *in_dir {
            let groups = (0..3)
                .filter(|g| groups & (1 << g) != 0)
                .map(|g| GROUPS[g].to_string())
                .collect();
            case.directory.push(CaseDirectoryUser {
                login: login.into(),
                email: None,
                groups,
            });
        }
        if *in_grafana {
            case.users.push(CaseUser {
                id: i as i64 + 2,
                login: login.into(),
                grafana_admin: false,
                disabled: false,
            });
            if let Some(role) = role {
                members.insert(login.to_string(), ROLES[*role]);
            }
            for (t, team) in teams.iter_mut().enumerate() {
                if team_bits & (1 << t) != 0 {
                    team.members.push(login.into());
                }
            }
            let bits = world.ledger_bits[i];
            if bits & 1 != 0 {
                ledger.push(format!("org 1 {login}"));
            }
            if bits & 2 != 0 {
                ledger.push(format!("team 1 10 {login}"));
            }
            if bits & 4 != 0 {
                ledger.push(format!("team 1 11 {login}"));
            }
        }
    }
    case.orgs.push(CaseOrg {
        id: 1,
        name: "Main Org.".into(),
        members,
        teams,
    });
    case.ledger = ledger;
    case
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn removals_only_touch_owned_state(world in world()) {
        let case = case_of(&world);
        let plan = case.plan();
        let ledger = case.ledger();
        for planned in &plan.changes {
            let owned = match &planned.change {
                Change::RemoveOrgUser { org_id, login } => {
                    ledger.owns(&OwnedFact::OrgMembership { org_id: *org_id, login: login_key(login) })
                }
                Change::RemoveTeamMember { org_id, team_id, login, .. } => {
                    ledger.owns(&OwnedFact::TeamMembership { org_id: *org_id, team_id: *team_id, login: login_key(login) })
                        || (*team_id == 10 && world.authoritative)
                }
                Change::SetGrafanaAdmin { login, value: false } => {
                    ledger.owns(&OwnedFact::GrafanaAdmin { login: login_key(login) })
                }
                Change::DisableUser { .. } | Change::DeleteUser { .. } => false,
                _ => true,
            };
            prop_assert!(owned, "unowned removal planned: {}", planned.change);
        }
    }

    #[test]
    fn applying_a_plan_converges(world in world()) {
        let case = case_of(&world);
        let plan = case.plan();
        prop_assert_eq!(plan.to_text(), case.plan().to_text());
        if plan.removals_withheld.is_none() {
            let mut observed = case.observed();
            let mut ledger = case.ledger();
            apply_model(&plan, &mut observed, &mut ledger);
            let desired = idsync_mapping::map_snapshot(&case.snapshot(), &case.rules());
            let policy = case.policy();
            let again = idsync_plan::plan(idsync_plan::PlanInput {
                source: "ldap", desired: &desired, observed: &observed, ledger: &ledger, policy: &policy,
                withhold_removals: None,
            scope: None,
            });
            prop_assert!(again.is_empty(), "not converged after:\n{}\nsecond plan:\n{}", plan.to_text(), again.to_text());
        }
    }
}
