//! Declared themes matched in customers' comments: a pure, multi-pattern matcher over folded text.
//!
//! A comment is **folded** into a sequence of words: Unicode canonical decomposition (NFD), then
//! combining marks dropped and letters lower-cased, so `PERCHÉ`, `Perche` and `perché` are the
//! same word `perche`. A word is a run of letters and digits (apostrophes, hyphens, punctuation
//! and spaces separate words: `l'app` is `l` `app`). Han ideographs and kana are one word each,
//! since those scripts put no space between words: a keyword `配送` is then the phrase `配` `送`
//! and still matches. Keywords are folded the same way, so matching works in any language.
//!
//! A keyword is a word (`corriere`: whole word only, `late` does not match `chocolate`), a stem
//! with a trailing `*` (`consegn*`: consegna, consegnato), or a phrase of consecutive words (`in
//! ritardo`, whose last word may be a stem). A theme's `exclude` entries, anywhere in the
//! comment, suppress that theme.
//!
//! Every keyword of every theme sits in one byte trie over folded words: each word of a comment
//! is walked once through it, collecting the stems ending along the path and the words ending at
//! its end; a phrase is entered by its first word and compared word by word from there. No
//! regular expression, no per-theme loop: the cost is linear in the comment's length.

use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;

use unicode_normalization::char::{decompose_canonical, is_combining_mark};

use crate::api::ThemeSpec;

/// Most themes a touchpoint may declare: bounds the `theme` label's cardinality.
pub const MAX_THEMES: usize = 200;
/// Most keywords and exclusions, all themes together, a touchpoint may declare.
pub const MAX_KEYWORDS: usize = 2000;
/// Most keywords of one theme.
pub const MAX_KEYWORDS_PER_THEME: usize = 100;
/// Most exclusions of one theme.
pub const MAX_EXCLUSIONS_PER_THEME: usize = 50;
/// Longest keyword or exclusion, in bytes.
pub const MAX_KEYWORD_BYTES: usize = 64;
/// Longest theme name (a label value).
pub const MAX_THEME_NAME_BYTES: usize = 63;

const SET_WORDS: usize = MAX_THEMES.div_ceil(64);

/// A problem in a declared theme set, with the path of the offending field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThemeError {
    /// Path of the field, e.g. `themes[2].keywords[5]`.
    pub path: String,
    /// What is wrong, never echoing more than the keyword itself.
    pub message: String,
}

impl fmt::Display for ThemeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Checks a theme set for what the matcher refuses: too many themes or keywords, malformed names,
/// misplaced `*`, keywords that fold to no word, duplicate names. `path` prefixes every error
/// (e.g. `spec.themes`). Empty when the set is valid.
pub fn validate_themes(themes: &[ThemeSpec], path: &str) -> Vec<ThemeError> {
    let mut errors = Vec::new();
    let mut error = |path: String, message: String| errors.push(ThemeError { path, message });
    if themes.len() > MAX_THEMES {
        error(
            path.to_owned(),
            format!(
                "{} themes declared, at most {MAX_THEMES} are allowed",
                themes.len()
            ),
        );
    }
    let total: usize = themes
        .iter()
        .map(|t| t.keywords.len() + t.exclude.len())
        .sum();
    if total > MAX_KEYWORDS {
        error(
            path.to_owned(),
            format!("{total} keywords and exclusions declared, at most {MAX_KEYWORDS} are allowed"),
        );
    }
    let mut words = Folded::default();
    for (i, theme) in themes.iter().enumerate() {
        let here = format!("{path}[{i}]");
        if !is_label_value(&theme.name) {
            error(
                format!("{here}.name"),
                format!(
                    "theme names are lower-case letters, digits and '-', at most \
                     {MAX_THEME_NAME_BYTES} characters, starting and ending with a letter or \
                     digit; got {:?}",
                    theme.name.chars().take(80).collect::<String>()
                ),
            );
        }
        if themes[..i].iter().any(|t| t.name == theme.name) {
            error(
                format!("{here}.name"),
                format!("theme {} is declared twice", theme.name),
            );
        }
        if theme.keywords.is_empty() {
            error(
                format!("{here}.keywords"),
                "a theme needs at least one keyword".into(),
            );
        }
        if theme.keywords.len() > MAX_KEYWORDS_PER_THEME {
            error(
                format!("{here}.keywords"),
                format!("at most {MAX_KEYWORDS_PER_THEME} keywords per theme"),
            );
        }
        if theme.exclude.len() > MAX_EXCLUSIONS_PER_THEME {
            error(
                format!("{here}.exclude"),
                format!("at most {MAX_EXCLUSIONS_PER_THEME} exclusions per theme"),
            );
        }
        for (list, entries) in [("keywords", &theme.keywords), ("exclude", &theme.exclude)] {
            for (j, keyword) in entries.iter().enumerate() {
                if let Err(message) = check_keyword(keyword, &mut words) {
                    error(format!("{here}.{list}[{j}]"), message);
                }
            }
        }
    }
    errors
}

fn is_label_value(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= MAX_THEME_NAME_BYTES
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || *b == b'-')
}

/// Why a keyword cannot be matched, if it cannot.
fn check_keyword(keyword: &str, words: &mut Folded) -> Result<(), String> {
    if keyword.is_empty() || keyword.len() > MAX_KEYWORD_BYTES {
        return Err(format!(
            "keywords are 1 to {MAX_KEYWORD_BYTES} bytes, got {}",
            keyword.len()
        ));
    }
    let body = keyword.strip_suffix('*').unwrap_or(keyword);
    if body.contains('*') {
        return Err(format!(
            "{keyword:?}: `*` is only allowed once, at the end (a word stem such as consegn*)"
        ));
    }
    if body.starts_with(char::is_whitespace) || body.ends_with(char::is_whitespace) {
        return Err(format!(
            "{keyword:?}: no leading or trailing whitespace (a stem's `*` follows its last letter)"
        ));
    }
    words.fold(body);
    if words.is_empty() {
        return Err(format!(
            "{keyword:?} has no letter or digit: it would match nothing"
        ));
    }
    if body.len() < keyword.len()
        && !body
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || is_combining_mark(c))
    {
        return Err(format!(
            "{keyword:?}: a stem's `*` must directly follow a letter or digit"
        ));
    }
    Ok(())
}

/// Text folded into words: one buffer of folded characters and the byte range of each word.
#[derive(Default, Debug)]
pub struct Folded {
    text: String,
    words: Vec<(usize, usize)>,
    /// Patterns whose first word matched while folding: (pattern, word index), checked once
    /// every word is folded (a phrase reads the words after its first).
    hits: Vec<(u32, u32)>,
}

impl Folded {
    /// Folds `text`, replacing what this held.
    pub fn fold(&mut self, text: &str) {
        self.text.clear();
        self.words.clear();
        let bytes = text.as_bytes();
        let latin = latin_folds();
        let mut start: Option<usize> = None;
        let mut i = 0;
        while let Some(&byte) = bytes.get(i) {
            // ASCII, most of most comments: a whole run of letters and digits at once.
            if byte.is_ascii_alphanumeric() {
                let end = bytes
                    .get(i..)
                    .and_then(|rest| rest.iter().position(|b| !b.is_ascii_alphanumeric()))
                    .map_or(bytes.len(), |run| i + run);
                let at = self.text.len();
                start.get_or_insert(at);
                if let Some(run) = text.get(i..end) {
                    self.text.push_str(run);
                }
                if let Some(tail) = self.text.get_mut(at..) {
                    tail.make_ascii_lowercase();
                }
                i = end;
                continue;
            }
            if byte < 0x80 {
                self.close(&mut start);
                i += 1;
                continue;
            }
            let Some(c) = text.get(i..).and_then(|rest| rest.chars().next()) else {
                break;
            };
            i += c.len_utf8();
            // Accented Latin letters from a table built once.
            let simple = (c as usize)
                .checked_sub(LATIN_FIRST)
                .and_then(|index| latin.get(index))
                .copied()
                .unwrap_or(0);
            if simple != 0 {
                start.get_or_insert(self.text.len());
                self.text.push(char::from(simple));
            } else if is_ideograph(c) {
                self.close(&mut start);
                let at = self.text.len();
                self.push_folded(c);
                self.words.push((at, self.text.len()));
            } else if c.is_alphanumeric() || is_combining_mark(c) {
                start.get_or_insert(self.text.len());
                self.push_folded(c);
            } else {
                self.close(&mut start);
            }
        }
        self.close(&mut start);
    }

    fn push_folded(&mut self, c: char) {
        let text = &mut self.text;
        decompose_canonical(c, |d| {
            if !is_combining_mark(d) {
                for lower in d.to_lowercase() {
                    if !is_combining_mark(lower) {
                        text.push(lower);
                    }
                }
            }
        });
    }

    fn close(&mut self, start: &mut Option<usize>) {
        if let Some(at) = start.take()
            && at < self.text.len()
        {
            self.words.push((at, self.text.len()));
        }
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether the text has no word.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The `i`th folded word.
    pub fn word(&self, i: usize) -> Option<&str> {
        let (start, end) = *self.words.get(i)?;
        self.text.get(start..end)
    }

    /// The folded words.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).filter_map(|i| self.word(i))
    }
}

/// First character of the accented-Latin table (À).
const LATIN_FIRST: usize = 0xC0;
/// One past its last character (Latin Extended-B ends at U+024F).
const LATIN_END: usize = 0x250;

/// For each character from U+00C0 to U+024F, the ASCII letter it folds to (`é` → `e`), or 0 when
/// it folds to anything else (`ß`, `æ`) or is no letter (`×`): those take the general path.
fn latin_folds() -> &'static [u8; LATIN_END - LATIN_FIRST] {
    static TABLE: OnceLock<[u8; LATIN_END - LATIN_FIRST]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [0u8; LATIN_END - LATIN_FIRST];
        let mut folded = Folded::default();
        for (offset, slot) in table.iter_mut().enumerate() {
            let Some(c) = u32::try_from(LATIN_FIRST + offset)
                .ok()
                .and_then(char::from_u32)
            else {
                continue;
            };
            if !c.is_alphanumeric() {
                continue;
            }
            folded.text.clear();
            folded.push_folded(c);
            if let [ascii] = folded.text.as_bytes()
                && ascii.is_ascii_alphanumeric()
            {
                *slot = *ascii;
            }
        }
        table
    })
}

/// Han ideographs and kana: scripts written without spaces between words, one word per character.
fn is_ideograph(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF)
}

/// The themes a comment matched: a set of indexes into the declared themes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThemeSet([u64; SET_WORDS]);

impl ThemeSet {
    fn insert(&mut self, theme: usize) {
        if let Some(word) = self.0.get_mut(theme / 64) {
            *word |= 1 << (theme % 64);
        }
    }

    /// Whether the set holds theme `theme`.
    pub fn contains(&self, theme: usize) -> bool {
        self.0
            .get(theme / 64)
            .is_some_and(|word| word & (1 << (theme % 64)) != 0)
    }

    /// Whether no theme matched.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|word| *word == 0)
    }

    /// The indexes in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, bits)| {
            let mut bits = *bits;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(w * 64 + bit)
            })
        })
    }
}

/// One keyword or exclusion, folded.
#[derive(Debug, Clone)]
struct Pattern {
    theme: usize,
    exclude: bool,
    /// The words after the first (a phrase), folded.
    rest: Box<[Box<str>]>,
    /// Whether the last word is a stem (a prefix).
    stem: bool,
}

/// The node of `word` in the trie being built, added if new.
fn insert(nodes: &mut Vec<Building>, word: &str) -> usize {
    let mut node = 0usize;
    for &byte in word.as_bytes() {
        let found = nodes
            .get(node)
            .and_then(|n| n.children.iter().find(|(b, _)| *b == byte))
            .map(|(_, next)| *next as usize);
        node = match found {
            Some(next) => next,
            None => {
                let next = nodes.len();
                nodes.push(Building::default());
                if let Some(parent) = nodes.get_mut(node) {
                    parent.children.push((byte, next as u32));
                }
                next
            }
        };
    }
    node
}

/// A trie node while building.
#[derive(Debug, Clone, Default)]
struct Building {
    children: Vec<(u8, u32)>,
    exact: Vec<u32>,
    stems: Vec<u32>,
}

/// A trie node, compact: its children are `edges[first_edge..first_edge + edge_count]` (sorted by
/// byte), its patterns `ids[first_id..]`: `stem_count` stems, then `exact_count` exact words.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    /// 1 + the index of this node's dense child table in `dense`, 0 when its few children are
    /// scanned in `edges` instead.
    dense: u32,
    first_edge: u32,
    first_id: u32,
    edge_count: u16,
    stem_count: u16,
    exact_count: u16,
}

/// A compiled theme set. Cheap to share; matching allocates nothing once warmed up.
#[derive(Debug, Clone)]
pub struct ThemeMatcher {
    names: Vec<String>,
    patterns: Vec<Pattern>,
    /// Node 0 is the root; its children are found through `root`.
    nodes: Vec<Node>,
    edges: Vec<(u8, u32)>,
    /// Child tables of the nodes with many children (the root's is `root`): a scan of their
    /// edges would dominate the walk.
    dense: Vec<[u32; 256]>,
    ids: Vec<u32>,
    root: Box<[u32; 256]>,
}

/// Nodes with at least this many children get a dense child table.
const DENSE_CHILDREN: usize = 6;

/// A word being walked through the trie while it is folded.
#[derive(Debug, Default)]
struct Walk {
    /// Where the current word starts in the folded text; `None` between words.
    word: Option<usize>,
    /// The trie node the word so far leads to.
    node: usize,
    /// Whether the word so far is a path of the trie.
    alive: bool,
}

impl Walk {
    /// Starts a word at the end of `folded`'s text unless one is under way.
    #[inline]
    fn start(&mut self, folded: &Folded) {
        if self.word.is_none() {
            self.word = Some(folded.text.len());
            self.node = 0;
            self.alive = true;
        }
    }
}

/// Each ASCII byte folded: letters lower-cased, digits kept, anything else 0 (a separator).
const ASCII_FOLD: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = if c.is_ascii_uppercase() {
            c + 32
        } else if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            0
        };
        b += 1;
    }
    table
};

thread_local! {
    static SCRATCH: RefCell<Folded> = RefCell::new(Folded::default());
}

impl ThemeMatcher {
    /// Compiles a theme set, refusing one that [`validate_themes`] refuses.
    pub fn new(themes: &[ThemeSpec]) -> Result<ThemeMatcher, Vec<ThemeError>> {
        let errors = validate_themes(themes, "themes");
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut building = vec![Building::default()];
        let mut patterns = Vec::new();
        let mut folded = Folded::default();
        for (theme, spec) in themes.iter().enumerate() {
            let entries = spec.keywords.iter().map(|k| (k, false));
            for (keyword, exclude) in entries.chain(spec.exclude.iter().map(|k| (k, true))) {
                let body = keyword.strip_suffix('*');
                let stem = body.is_some();
                folded.fold(body.unwrap_or(keyword));
                let mut words = folded.words();
                let Some(first) = words.next() else { continue };
                let rest: Box<[Box<str>]> = words.map(Box::from).collect();
                let id = patterns.len() as u32;
                let node = insert(&mut building, first);
                if stem && rest.is_empty() {
                    building[node].stems.push(id);
                } else {
                    building[node].exact.push(id);
                }
                patterns.push(Pattern {
                    theme,
                    exclude,
                    rest,
                    stem,
                });
            }
        }
        let mut matcher = ThemeMatcher {
            names: themes.iter().map(|t| t.name.clone()).collect(),
            patterns,
            nodes: Vec::with_capacity(building.len()),
            edges: Vec::new(),
            dense: Vec::new(),
            ids: Vec::new(),
            root: Box::new([0; 256]),
        };
        for (index, node) in building.iter_mut().enumerate() {
            node.children.sort_unstable();
            if index == 0 {
                for &(byte, child) in &node.children {
                    matcher.root[usize::from(byte)] = child;
                }
            }
            let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
            let mut dense = 0;
            if index != 0 && node.children.len() >= DENSE_CHILDREN {
                let mut table = [0u32; 256];
                for &(byte, child) in &node.children {
                    table[usize::from(byte)] = child;
                }
                matcher.dense.push(table);
                dense = matcher.dense.len() as u32;
            }
            matcher.nodes.push(Node {
                dense,
                first_edge: matcher.edges.len() as u32,
                first_id: matcher.ids.len() as u32,
                edge_count: count(node.children.len()),
                stem_count: count(node.stems.len()),
                exact_count: count(node.exact.len()),
            });
            matcher.edges.extend_from_slice(&node.children);
            matcher.ids.extend_from_slice(&node.stems);
            matcher.ids.extend_from_slice(&node.exact);
        }
        Ok(matcher)
    }

    #[inline]
    fn child(&self, node: usize, byte: u8) -> Option<usize> {
        if node == 0 {
            let next = self.root[usize::from(byte)];
            return (next != 0).then_some(next as usize);
        }
        let n = self.nodes.get(node)?;
        if n.dense != 0 {
            let next = *self
                .dense
                .get(n.dense as usize - 1)?
                .get(usize::from(byte))?;
            return (next != 0).then_some(next as usize);
        }
        let first = n.first_edge as usize;
        let edges = self.edges.get(first..first + usize::from(n.edge_count))?;
        edges
            .iter()
            .find(|(b, _)| *b >= byte)
            .filter(|(b, _)| *b == byte)
            .map(|(_, next)| *next as usize)
    }

    /// The stems ending at `node`, and the words ending there.
    #[inline]
    fn ids(&self, node: &Node) -> (&[u32], &[u32]) {
        let first = node.first_id as usize;
        let stems = first + usize::from(node.stem_count);
        let exact = stems + usize::from(node.exact_count);
        (
            self.ids.get(first..stems).unwrap_or(&[]),
            self.ids.get(stems..exact).unwrap_or(&[]),
        )
    }

    /// The declared theme names, in declaration order (a [`ThemeSet`] indexes them).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether no theme is declared.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The themes `comment` mentions and does not exclude.
    pub fn matches(&self, comment: &str) -> ThemeSet {
        if self.patterns.is_empty() {
            return ThemeSet::default();
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut folded) => self.matches_in(comment, &mut folded),
            Err(_) => self.matches_in(comment, &mut Folded::default()),
        })
    }

    /// Folds `comment` and walks the trie in the same pass: each folded byte of a word advances
    /// the walk while the word so far is a path of the trie (stems ending along it are hits),
    /// and a word's end records the words ending there. Then the hits are checked, phrases
    /// against the words that follow.
    fn matches_in(&self, comment: &str, folded: &mut Folded) -> ThemeSet {
        folded.text.clear();
        folded.words.clear();
        folded.hits.clear();
        let bytes = comment.as_bytes();
        let latin = latin_folds();
        let mut walk = Walk::default();
        let mut i = 0;
        while let Some(&byte) = bytes.get(i) {
            if byte < 0x80 {
                let lower = ASCII_FOLD[usize::from(byte)];
                if lower != 0 {
                    walk.start(folded);
                    folded.text.push(char::from(lower));
                    self.step(&mut walk, lower, folded);
                } else {
                    self.end_word(&mut walk, folded);
                }
                i += 1;
                continue;
            }
            let Some(c) = comment.get(i..).and_then(|rest| rest.chars().next()) else {
                break;
            };
            i += c.len_utf8();
            let simple = (c as usize)
                .checked_sub(LATIN_FIRST)
                .and_then(|index| latin.get(index))
                .copied()
                .unwrap_or(0);
            if simple != 0 {
                walk.start(folded);
                folded.text.push(char::from(simple));
                self.step(&mut walk, simple, folded);
            } else if is_ideograph(c) {
                self.end_word(&mut walk, folded);
                walk.start(folded);
                self.push_and_step(&mut walk, c, folded);
                self.end_word(&mut walk, folded);
            } else if c.is_alphanumeric() || is_combining_mark(c) {
                walk.start(folded);
                self.push_and_step(&mut walk, c, folded);
            } else {
                self.end_word(&mut walk, folded);
            }
        }
        self.end_word(&mut walk, folded);
        let mut found = ThemeSet::default();
        let mut excluded = ThemeSet::default();
        for k in 0..folded.hits.len() {
            if let Some(&(id, at)) = folded.hits.get(k) {
                self.hit(id, folded, at as usize, &mut found, &mut excluded);
            }
        }
        for (kept, dropped) in found.0.iter_mut().zip(excluded.0) {
            *kept &= !dropped;
        }
        found
    }

    /// Folds `c` onto the text (general path) and walks its bytes.
    fn push_and_step(&self, walk: &mut Walk, c: char, folded: &mut Folded) {
        let before = folded.text.len();
        folded.push_folded(c);
        let after = folded.text.len();
        for at in before..after {
            if let Some(&byte) = folded.text.as_bytes().get(at) {
                self.step(walk, byte, folded);
            }
        }
    }

    /// One folded byte of the current word.
    #[inline]
    fn step(&self, walk: &mut Walk, byte: u8, folded: &mut Folded) {
        if !walk.alive {
            return;
        }
        let Some(next) = self.child(walk.node, byte) else {
            walk.alive = false;
            return;
        };
        walk.node = next;
        if let Some(n) = self.nodes.get(next)
            && n.stem_count > 0
        {
            let word = folded.words.len() as u32;
            folded
                .hits
                .extend(self.ids(n).0.iter().map(|&id| (id, word)));
        }
    }

    /// Ends the current word, if any: records it and the words of the trie ending with it.
    #[inline]
    fn end_word(&self, walk: &mut Walk, folded: &mut Folded) {
        let Some(start) = walk.word.take() else {
            return;
        };
        if start >= folded.text.len() {
            return;
        }
        if walk.alive
            && walk.node != 0
            && let Some(n) = self.nodes.get(walk.node)
            && n.exact_count > 0
        {
            let word = folded.words.len() as u32;
            folded
                .hits
                .extend(self.ids(n).1.iter().map(|&id| (id, word)));
        }
        folded.words.push((start, folded.text.len()));
    }

    /// Pattern `id` whose first word is word `at` of `folded`: records it if the rest follows.
    fn hit(
        &self,
        id: u32,
        folded: &Folded,
        at: usize,
        found: &mut ThemeSet,
        excluded: &mut ThemeSet,
    ) {
        let Some(pattern) = self.patterns.get(id as usize) else {
            return;
        };
        if pattern.rest.is_empty() {
            if pattern.exclude {
                excluded.insert(pattern.theme);
            } else {
                found.insert(pattern.theme);
            }
            return;
        }
        let last = pattern.rest.len();
        let follows = pattern.rest.iter().enumerate().all(|(k, expected)| {
            folded.word(at + 1 + k).is_some_and(|word| {
                if pattern.stem && k + 1 == last {
                    word.starts_with(&**expected)
                } else {
                    word == &**expected
                }
            })
        });
        if follows {
            if pattern.exclude {
                excluded.insert(pattern.theme);
            } else {
                found.insert(pattern.theme);
            }
        }
    }
}

#[cfg(test)]
mod tests;
