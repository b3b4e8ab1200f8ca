//! Team sync rules from `idsync.toml`: a rule names an org, a team and the groups whose members belong in it;
//! a pattern rule derives the team name from each matching group's name, so every such group gets a team.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use idsync_core::{OrgRef, Reason, TeamRef};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::dn::GroupPattern;

/// `[[teams]]`: members of any of `groups` (case-insensitive; `*` wildcards within an RDN value) belong in
/// `team` of `org`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamRule {
    /// Org id (number) or exact org name (string).
    pub org: OrgRef,
    pub team: String,
    pub groups: Vec<String>,
    /// Remove every member the rules do not grant, including members added by hand.
    #[serde(default)]
    pub authoritative: bool,
}

/// `[[team_patterns]]`: every group matching `group_pattern` (a case-insensitive regex over the whole group
/// name) gets a team named by expanding `team` with the pattern's captures (`$1`, `${name}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamPatternRule {
    pub org: OrgRef,
    pub group_pattern: String,
    pub team: String,
    #[serde(default)]
    pub authoritative: bool,
}

/// A team rule that cannot be compiled, with the key path of the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRuleError {
    pub key_path: String,
    pub message: String,
}

impl fmt::Display for TeamRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key_path, self.message)
    }
}

impl std::error::Error for TeamRuleError {}

#[derive(Debug, Clone)]
struct Target {
    team: TeamRef,
    rule: String,
    authoritative: bool,
}

#[derive(Debug, Clone)]
struct CompiledPattern {
    regex: Regex,
    org: OrgRef,
    template: String,
    rule: String,
    authoritative: bool,
}

/// Team rules ready to match groups quickly: exact names in a hash map, wildcards and regexes in lists.
#[derive(Debug, Clone, Default)]
pub struct CompiledTeamRules {
    exact: HashMap<String, Vec<Target>>,
    wildcards: Vec<(GroupPattern, Target)>,
    patterns: Vec<CompiledPattern>,
    /// Teams named by exact rules, managed even when no user is in them.
    named: BTreeMap<TeamRef, bool>,
}

/// One team grant produced by one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamGrant {
    pub team: TeamRef,
    pub reason: Reason,
    pub authoritative: bool,
}

impl CompiledTeamRules {
    /// Compiles the rules, reporting every invalid one.
    pub fn compile(rules: &[TeamRule], patterns: &[TeamPatternRule]) -> Result<Self, Vec<TeamRuleError>> {
        let mut compiled = CompiledTeamRules::default();
        let mut errors = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let key = format!("teams[{index}]");
            if rule.team.trim().is_empty() {
                errors.push(TeamRuleError {
                    key_path: format!("{key}.team"),
                    message: "team name is empty".into(),
                });
            }
            if rule.groups.is_empty() {
                errors.push(TeamRuleError {
                    key_path: format!("{key}.groups"),
                    message: "a team rule needs at least one group".into(),
                });
            }
            let team = TeamRef {
                org: rule.org.clone(),
                name: rule.team.clone(),
            };
            let authoritative = compiled.named.entry(team.clone()).or_insert(false);
            *authoritative |= rule.authoritative;
            for group in &rule.groups {
                let target = Target {
                    team: team.clone(),
                    rule: key.clone(),
                    authoritative: rule.authoritative,
                };
                let pattern = GroupPattern::new(group);
                if group.contains('*') {
                    compiled.wildcards.push((pattern, target));
                } else {
                    compiled
                        .exact
                        .entry(pattern.as_str().to_string())
                        .or_default()
                        .push(target);
                }
            }
        }
        for (index, rule) in patterns.iter().enumerate() {
            let key = format!("team_patterns[{index}]");
            match RegexBuilder::new(&format!("^(?:{})$", rule.group_pattern))
                .case_insensitive(true)
                .build()
            {
                Ok(regex) => compiled.patterns.push(CompiledPattern {
                    regex,
                    org: rule.org.clone(),
                    template: rule.team.clone(),
                    rule: key,
                    authoritative: rule.authoritative,
                }),
                Err(err) => errors.push(TeamRuleError {
                    key_path: format!("{key}.group_pattern"),
                    message: format!("invalid regular expression: {err}"),
                }),
            }
        }
        if errors.is_empty() {
            Ok(compiled)
        } else {
            Err(errors)
        }
    }

    /// Teams named by exact rules (with their authoritative flag).
    pub fn named_teams(&self) -> &BTreeMap<TeamRef, bool> {
        &self.named
    }

    /// Every team grant one group yields.
    pub fn grants_for_group(&self, group: &str) -> Vec<TeamGrant> {
        let lowered = group.to_lowercase();
        let mut grants = Vec::new();
        let mut push = |target: &Target| {
            grants.push(TeamGrant {
                team: target.team.clone(),
                reason: Reason::new(target.rule.as_str(), group),
                authoritative: target.authoritative,
            })
        };
        if let Some(targets) = self.exact.get(&lowered) {
            targets.iter().for_each(&mut push);
        }
        for (pattern, target) in &self.wildcards {
            if pattern.matches_lowered(&lowered) {
                push(target);
            }
        }
        for pattern in &self.patterns {
            if let Some(captures) = pattern.regex.captures(group) {
                let mut name = String::new();
                captures.expand(&pattern.template, &mut name);
                if !name.is_empty() {
                    grants.push(TeamGrant {
                        team: TeamRef {
                            org: pattern.org.clone(),
                            name,
                        },
                        reason: Reason::new(pattern.rule.as_str(), group),
                        authoritative: pattern.authoritative,
                    });
                }
            }
        }
        grants
    }
}
