//! Declared themes: what customers' comments are about, as keywords matched at the collector.
//!
//! Not a custom resource of its own: a theme set is declared where the journey is (the operator
//! copies it into each touchpoint's collector configuration). Matching is in [`crate::themes`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pattern of a keyword or exclusion: no leading or trailing whitespace, and no `*` except one at
/// the very end (a word-stem prefix, e.g. `consegn*`). Inner spaces make a phrase.
pub const KEYWORD_PATTERN: &str = r"^[^*\s]([^*]*[^*\s])?\*?$";

/// A theme customers write about (delivery, price, staff...), counted in
/// `cx_feedback_themes_total{theme}` when a comment mentions one of its keywords.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThemeSpec {
    /// Name of the theme: the value of the `theme` label (lower-case letters, digits and '-', at most 63 characters), e.g. delivery.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Words or phrases that mean the theme, in any language. Matched whole-word, ignoring case and accents (PERCHE matches perché); a trailing * matches every word starting with the stem (consegn* matches consegna, consegnato); a phrase (in ritardo) matches consecutive words.
    #[schemars(
        length(min = 1, max = 100),
        inner(
            length(min = 1, max = 64),
            regex(pattern = r"^[^*\s]([^*]*[^*\s])?\*?$")
        )
    )]
    pub keywords: Vec<String>,
    /// Words or phrases that, anywhere in a comment, suppress this theme's match (e.g. "non in ritardo" for a delivery theme with "in ritardo"). Same syntax as keywords.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 50),
        inner(
            length(min = 1, max = 64),
            regex(pattern = r"^[^*\s]([^*]*[^*\s])?\*?$")
        )
    )]
    pub exclude: Vec<String>,
}
