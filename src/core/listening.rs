//! Listening to what customers write: which declared themes each touchpoint's collector counts.
//!
//! Themes are declared on a CustomerJourney (`spec.themes`), once for the whole programme; a
//! touchpoint counts the themes of every journey it belongs to (its channel is selected by the
//! journey and its stage is one of the journey's stages). Pure, so the operator and `check
//! --plan` derive the same collector configuration.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::api::{
    Channel, CustomerJourney, JourneyExport, Severity, ThemeSpec, Touchpoint, TouchpointExport,
};
use crate::themes::{Folded, ThemeMatcher, validate_themes};

use super::findings::{Finding, FindingCode, ObjectRef};
use super::selector;
use super::world::namespace_of;

/// Whether `journey` holds `touchpoint` (on `channel`): same namespace, the journey selects the
/// channel, and the touchpoint's stage is one of the journey's.
pub fn journey_holds(
    journey: &CustomerJourney,
    touchpoint: &Touchpoint,
    channel: &Channel,
) -> bool {
    namespace_of(journey) == namespace_of(touchpoint)
        && namespace_of(channel) == namespace_of(touchpoint)
        && journey.spec.stages.contains(&touchpoint.spec.stage)
        && selector::matches(
            journey.spec.channel_selector.as_ref(),
            channel.metadata.labels.as_ref(),
        )
}

/// `touchpoint` as its collector is planned: the export choices it leaves out
/// (`spec.export.enabled`, `spec.export.comments`) completed by the journeys of `journeys`
/// holding it (on `channel`), the more private choice winning when several do. Unchanged when no
/// journey holding it has an export choice.
pub fn with_journey_export(
    touchpoint: &Touchpoint,
    channel: Option<&Channel>,
    journeys: &[&CustomerJourney],
) -> Touchpoint {
    let mut planned = touchpoint.clone();
    let Some(channel) = channel else {
        return planned;
    };
    let choices: Vec<&JourneyExport> = journeys
        .iter()
        .filter(|j| journey_holds(j, touchpoint, channel))
        .filter_map(|j| j.spec.export.as_ref())
        .collect();
    if choices.is_empty() {
        return planned;
    }
    let own = touchpoint.spec.export.clone().unwrap_or_default();
    let enabled = own
        .enabled
        .or_else(|| choices.iter().any(|c| !c.enabled).then_some(false));
    let comments = own
        .comments
        .or_else(|| choices.iter().any(|c| !c.comments).then_some(false));
    if (enabled, comments) != (own.enabled, own.comments) {
        planned.spec.export = Some(TouchpointExport {
            enabled,
            comments,
            ..own
        });
    }
    planned
}

/// What is wrong with a journey's themes, each finding naming the field (`spec.themes[i]...`):
/// a set the collectors would refuse, keywords that can never match (the theme excludes them),
/// a keyword repeated across themes, themes with no touchpoint to count them. `touchpoints` is
/// the number of touchpoints the journey holds.
pub fn theme_findings(
    journey: &CustomerJourney,
    subject: &ObjectRef,
    touchpoints: usize,
) -> Vec<Finding> {
    let themes = &journey.spec.themes;
    let mut findings = Vec::new();
    if themes.is_empty() {
        return findings;
    }
    let name = journey.name_any();
    let errors = validate_themes(themes, "spec.themes");
    for error in &errors {
        findings.push(
            Finding::new(
                FindingCode::ThemeInvalid,
                Severity::Error,
                subject.clone(),
                format!(
                    "journey {name}: {}; the collectors would refuse these themes, so none is counted",
                    error.message
                ),
            )
            .field(error.path.clone()),
        );
    }
    if !errors.is_empty() {
        return findings;
    }
    for (i, theme) in themes.iter().enumerate() {
        // Each keyword, written as a comment, must match its own theme: otherwise the theme's
        // exclusions suppress it wherever it appears.
        let Ok(matcher) = ThemeMatcher::new(std::slice::from_ref(theme)) else {
            continue;
        };
        let dead: Vec<usize> = theme
            .keywords
            .iter()
            .enumerate()
            .filter(|(_, k)| matcher.matches(k.trim_end_matches('*')).is_empty())
            .map(|(k, _)| k)
            .collect();
        let all_dead = dead.len() == theme.keywords.len();
        for k in dead {
            findings.push(
                Finding::new(
                    FindingCode::ThemeNeverMatches,
                    if all_dead { Severity::Error } else { Severity::Warning },
                    subject.clone(),
                    format!(
                        "theme {}: keyword {:?} can never match, the theme's own exclude suppresses it{}",
                        theme.name,
                        theme.keywords[k],
                        if all_dead { "; no keyword of the theme can match" } else { "" }
                    ),
                )
                .detail(theme.name.clone())
                .field(format!("spec.themes[{i}].keywords[{k}]")),
            );
        }
    }
    // The same keyword, folded, in two themes.
    let mut folded = Folded::default();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, theme) in themes.iter().enumerate() {
        for (k, keyword) in theme.keywords.iter().enumerate() {
            folded.fold(keyword.trim_end_matches('*'));
            let key = format!(
                "{}{}",
                folded.words().collect::<Vec<_>>().join(" "),
                if keyword.ends_with('*') { "*" } else { "" }
            );
            match seen.get(&key) {
                Some(&first) if first != i => findings.push(
                    Finding::new(
                        FindingCode::ThemeKeywordRepeated,
                        Severity::Warning,
                        subject.clone(),
                        format!(
                            "keyword {keyword:?} is in themes {} and {}: every comment with it counts for both",
                            themes[first].name, theme.name
                        ),
                    )
                    .detail(theme.name.clone())
                    .field(format!("spec.themes[{i}].keywords[{k}]")),
                ),
                Some(_) => {}
                None => {
                    seen.insert(key, i);
                }
            }
        }
    }
    if touchpoints == 0 {
        findings.push(
            Finding::new(
                FindingCode::ThemeWithoutTouchpoint,
                Severity::Warning,
                subject.clone(),
                format!(
                    "journey {name} declares {} but holds no touchpoint to count them",
                    if themes.len() == 1 {
                        "a theme".to_string()
                    } else {
                        format!("{} themes", themes.len())
                    }
                ),
            )
            .field("spec.themes"),
        );
    }
    findings
}

/// Themes of the same name declared differently by two journeys that hold a common touchpoint:
/// the touchpoint counts the first journey's (name order), so the later one is told, naming
/// its field. Returned with the later journey's reference.
pub fn theme_conflicts(world: &super::World) -> Vec<(ObjectRef, Finding)> {
    let mut journeys: Vec<&CustomerJourney> = world
        .journeys
        .iter()
        .filter(|j| !j.spec.themes.is_empty())
        .collect();
    journeys.sort_by_key(|j| (namespace_of(*j).to_string(), j.name_any()));
    let held: Vec<Vec<usize>> = journeys
        .iter()
        .map(|j| world.journey_touchpoints(j, &world.journey_channels(j)))
        .collect();
    let mut conflicts = Vec::new();
    for (b, later) in journeys.iter().enumerate() {
        for (a, earlier) in journeys.iter().enumerate().take(b) {
            let shared = held[b].iter().find(|t| held[a].contains(t));
            let Some(&shared) = shared else { continue };
            for (i, theme) in later.spec.themes.iter().enumerate() {
                let differs = earlier
                    .spec
                    .themes
                    .iter()
                    .find(|t| t.name == theme.name)
                    .is_some_and(|t| t != theme);
                if differs {
                    let subject = ObjectRef::to(*later);
                    let finding = Finding::new(
                        FindingCode::ThemeDeclaredDifferently,
                        Severity::Warning,
                        subject.clone(),
                        format!(
                            "theme {} is also declared, differently, by journey {}; touchpoints both hold (e.g. {}) count journey {}'s",
                            theme.name,
                            earlier.name_any(),
                            world.touchpoints[shared].name_any(),
                            earlier.name_any()
                        ),
                    )
                    .detail(theme.name.clone())
                    .field(format!("spec.themes[{i}]"));
                    conflicts.push((subject, finding));
                }
            }
        }
    }
    conflicts
}

/// The journeys whose themes reach collectors: those declaring themes the collectors accept,
/// each set validated once for every touchpoint planned from them. A set the collectors would
/// refuse is left out (check and the journey's status say why): one bad journey never stops a
/// pool from reloading.
pub fn theme_sources(journeys: &[CustomerJourney]) -> Vec<&CustomerJourney> {
    journeys
        .iter()
        .filter(|j| !j.spec.themes.is_empty())
        .filter(|j| validate_themes(&j.spec.themes, "spec.themes").is_empty())
        .collect()
}

/// The themes `touchpoint`'s collector counts: those of every journey of `sources`
/// ([`theme_sources`]) holding it, by name. When two journeys declare a theme of the same name,
/// the journey first in name order defines it, so the result never depends on their order.
pub fn themes_of(
    touchpoint: &Touchpoint,
    channel: Option<&Channel>,
    sources: &[&CustomerJourney],
) -> Vec<ThemeSpec> {
    let Some(channel) = channel else {
        return Vec::new();
    };
    let mut holding: Vec<&CustomerJourney> = sources
        .iter()
        .copied()
        .filter(|j| journey_holds(j, touchpoint, channel))
        .collect();
    holding.sort_by_key(|j| j.name_any());
    let mut themes: BTreeMap<&str, &ThemeSpec> = BTreeMap::new();
    for journey in holding {
        for theme in &journey.spec.themes {
            themes.entry(theme.name.as_str()).or_insert(theme);
        }
    }
    themes.into_values().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journey's export choices reach the touchpoints it holds, unless they choose
    /// themselves; the more private of two journeys wins; other touchpoints are untouched.
    #[test]
    fn journeys_choose_what_their_touchpoints_export_unless_a_touchpoint_does() {
        let web: Channel = parse(
            "metadata: {name: web, namespace: shop, labels: {kind: online}}\n\
             spec: {type: web}\n",
        );
        let store: Channel =
            parse("metadata: {name: store, namespace: shop}\nspec: {type: store}\n");
        let touchpoint = |name: &str, channel: &str, export: &str| -> Touchpoint {
            parse(&format!(
                "metadata: {{name: {name}, namespace: shop}}\n\
                 spec: {{channel: {channel}, stage: purchase, signals: {{surveys: [{{metric: nps}}]}}{export}}}\n"
            ))
        };
        let journey = |name: &str, export: &str| -> CustomerJourney {
            parse(&format!(
                "metadata: {{name: {name}, namespace: shop}}\n\
                 spec: {{stages: [purchase], channelSelector: {{matchLabels: {{kind: online}}}}{export}}}\n"
            ))
        };
        let quiet = journey("quiet", ", export: {comments: false}");
        let closed = journey("closed", ", export: {enabled: false}");
        let open = journey("open", ", export: {enabled: true, comments: true}");
        let silent = journey("silent", "");
        let export_of = |t: &Touchpoint, channel: &Channel, journeys: &[&CustomerJourney]| {
            with_journey_export(t, Some(channel), journeys).spec.export
        };
        let plain = touchpoint("checkout", "web", "");
        assert_eq!(export_of(&plain, &web, &[&silent, &open]), None);
        assert_eq!(
            export_of(&plain, &web, &[&quiet, &open]),
            Some(TouchpointExport {
                enabled: None,
                comments: Some(false),
                raw_identifiers: false
            })
        );
        assert_eq!(
            export_of(&plain, &web, &[&quiet, &closed]),
            Some(TouchpointExport {
                enabled: Some(false),
                comments: Some(false),
                raw_identifiers: false
            })
        );
        // The touchpoint's own choice overrides; what it leaves out follows the journey.
        let chooses = touchpoint(
            "feedback",
            "web",
            ", export: {enabled: true, rawIdentifiers: true}",
        );
        assert_eq!(
            export_of(&chooses, &web, &[&quiet, &closed]),
            Some(TouchpointExport {
                enabled: Some(true),
                comments: Some(false),
                raw_identifiers: true
            })
        );
        // A touchpoint on a channel the journey does not select keeps its own choices.
        let till = touchpoint("till", "store", "");
        assert_eq!(export_of(&till, &store, &[&quiet, &closed]), None);
        assert_eq!(
            with_journey_export(&plain, None, &[&closed]).spec.export,
            None,
            "without its channel no journey holds it"
        );
    }

    fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
        serde_yaml::from_str(yaml).expect("a fixture")
    }

    fn journey(name: &str, stages: &str, selector: &str, themes: &str) -> CustomerJourney {
        parse(&format!(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: CustomerJourney\n\
             metadata: {{name: {name}, namespace: shop}}\n\
             spec: {{stages: {stages}, channelSelector: {selector}, themes: {themes}}}\n"
        ))
    }

    fn fixtures() -> (Touchpoint, Channel, Channel) {
        let touchpoint = parse(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: Touchpoint\n\
             metadata: {name: tracking, namespace: shop}\n\
             spec: {channel: app, stage: delivery, signals: {surveys: [{metric: nps}]}}\n",
        );
        let app = parse(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: Channel\n\
             metadata: {name: app, namespace: shop, labels: {journey: retail}}\nspec: {type: mobile-app}\n",
        );
        let store = parse(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: Channel\n\
             metadata: {name: store, namespace: shop}\nspec: {type: store}\n",
        );
        (touchpoint, app, store)
    }

    #[test]
    fn a_touchpoint_counts_the_themes_of_the_journeys_that_hold_it_by_name() {
        let (touchpoint, app, store) = fixtures();
        let retail = journey(
            "retail",
            "[purchase, delivery]",
            "{matchLabels: {journey: retail}}",
            "[{name: price, keywords: [prezzo, price]}, {name: delivery, keywords: [consegn*]}]",
        );
        let later = journey(
            "zz-later",
            "[delivery]",
            "{}",
            "[{name: delivery, keywords: [courier]}, {name: app-crashes, keywords: [crash*]}]",
        );
        let other_stage = journey(
            "returns",
            "[support]",
            "{}",
            "[{name: refunds, keywords: [rimborso]}]",
        );
        let names = |themes: Vec<ThemeSpec>| -> Vec<(String, Vec<String>)> {
            themes.into_iter().map(|t| (t.name, t.keywords)).collect()
        };
        let all = [later.clone(), other_stage.clone(), retail.clone()];
        let got = names(themes_of(&touchpoint, Some(&app), &theme_sources(&all)));
        assert_eq!(
            got,
            [
                ("app-crashes".to_string(), vec!["crash*".to_string()]),
                // retail comes first in name order: its definition wins.
                ("delivery".to_string(), vec!["consegn*".to_string()]),
                (
                    "price".to_string(),
                    vec!["prezzo".to_string(), "price".to_string()]
                ),
            ]
        );
        // The order the journeys come in changes nothing.
        let reversed = [retail, other_stage, later.clone()];
        let reversed = theme_sources(&reversed);
        assert_eq!(names(themes_of(&touchpoint, Some(&app), &reversed)), got);
        // A channel the journey does not select, or no channel: no retail themes.
        let mut on_store = touchpoint.clone();
        on_store.spec.channel = "store".into();
        assert_eq!(
            names(themes_of(&on_store, Some(&store), &reversed))
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>(),
            ["app-crashes", "delivery"]
        );
        assert!(themes_of(&touchpoint, None, &reversed).is_empty());
    }
}
