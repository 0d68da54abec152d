//! Reading manifests from files, folders and stdin, keeping where each object came from, and
//! sorting them into the four kinds of the API after schema validation.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::api::{Channel, CustomerJourney, ExperienceKPI, GROUP, Touchpoint};
use crate::schema::{SchemaValidator, SchemaViolation};

pub mod lines;
pub mod yaml11;

pub use crate::core::Origin;
pub use lines::FieldLines;

/// Largest manifest file read; bigger ones are refused rather than exhausting memory.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// One YAML document that parsed.
#[derive(Debug, Clone)]
pub struct Document {
    /// Where it came from: its file and the line where it starts.
    pub origin: Origin,
    /// Its content.
    pub value: Value,
    /// The line of each of its fields.
    pub fields: FieldLines,
}

impl Document {
    /// Where `field` (a path such as `spec.stage`) is written, or its nearest enclosing field, or
    /// the document's start.
    pub fn locate(&self, field: &str) -> Origin {
        Origin {
            file: self.origin.file.clone(),
            line: self.fields.line_of(field).unwrap_or(self.origin.line),
        }
    }
}

/// Input that cannot be used at all: the check cannot say anything meaningful about it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    /// A file or folder could not be read.
    #[error("{file}: cannot read: {message}")]
    Unreadable { file: String, message: String },
    /// A file is larger than [`MAX_FILE_BYTES`].
    #[error(
        "{file}: {size} bytes is larger than the {MAX_FILE_BYTES}-byte limit for a manifest file"
    )]
    TooLarge { file: String, size: u64 },
    /// Nothing in the input is a cx-conductor resource: there is nothing to check.
    #[error("{message}")]
    NothingToCheck { message: String },
    /// A document is not valid YAML.
    #[error("{file}:{line}:{column}: invalid YAML: {message}")]
    InvalidYaml {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Reads every `.yaml`, `.yml` and `.json` file under `paths` (folders recursively, in name order;
/// `-` reads stdin) and splits them into documents.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Document>, LoadError> {
    let mut documents = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(std::io::stdin(), MAX_FILE_BYTES + 1),
                &mut text,
            )
            .map_err(|e| LoadError::Unreadable {
                file: "-".into(),
                message: e.to_string(),
            })?;
            if text.len() as u64 > MAX_FILE_BYTES {
                return Err(LoadError::TooLarge {
                    file: "-".into(),
                    size: text.len() as u64,
                });
            }
            documents.extend(parse_documents("-", &text)?);
            continue;
        }
        for file in manifest_files(path)? {
            let name = file.display().to_string();
            let unreadable = |e: std::io::Error| LoadError::Unreadable {
                file: name.clone(),
                message: e.to_string(),
            };
            let size = std::fs::metadata(&file).map_err(unreadable)?.len();
            if size > MAX_FILE_BYTES {
                return Err(LoadError::TooLarge { file: name, size });
            }
            let bytes = std::fs::read(&file).map_err(unreadable)?;
            let text = String::from_utf8(bytes).map_err(|e| LoadError::Unreadable {
                file: name.clone(),
                message: format!("not UTF-8 text ({e})"),
            })?;
            documents.extend(parse_documents(&name, &text)?);
        }
    }
    Ok(documents)
}

/// The manifest files a path stands for: itself, or the YAML/JSON files below it in name order.
fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let unreadable = |e: std::io::Error| LoadError::Unreadable {
        file: path.display().to_string(),
        message: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(unreadable)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    entries.sort();
    let mut files = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            files.extend(manifest_files(&entry)?);
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            files.push(entry);
        }
    }
    Ok(files)
}

/// Splits a multi-document YAML text at `---` markers and parses each non-empty document.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Document>, LoadError> {
    let mut documents = Vec::new();
    let mut chunk_start = 0usize; // 0-based line where the current chunk starts
    let mut chunk = String::new();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "..." {
            push_document(file, &chunk, chunk_start, &mut documents)?;
            chunk.clear();
            chunk_start = index + 1;
            if let Some(rest) = trimmed.strip_prefix("--- ") {
                chunk.push_str(rest);
                chunk.push('\n');
                chunk_start = index;
            }
        } else {
            chunk.push_str(line);
        }
    }
    push_document(file, &chunk, chunk_start, &mut documents)?;
    Ok(documents)
}

fn push_document(
    file: &str,
    chunk: &str,
    first_line: usize,
    documents: &mut Vec<Document>,
) -> Result<(), LoadError> {
    // The object kubectl would send (YAML 1.1 scalars, merge keys); serde_yaml describes what
    // libyaml cannot parse.
    let parsed = match yaml11::parse(chunk) {
        Ok(value) => Ok(value),
        Err(Some(unsendable)) => {
            return Err(LoadError::InvalidYaml {
                file: file.into(),
                line: first_line + unsendable.line + 1,
                column: unsendable.column + 1,
                message: unsendable.message,
            });
        }
        Err(None) => serde_yaml::from_str::<Option<Value>>(chunk),
    };
    let value: Value = match parsed {
        Ok(Some(value)) => value,
        Ok(None) => return Ok(()),
        Err(e) => {
            let (line, column) = e
                .location()
                .map(|l| (first_line + l.line(), l.column()))
                .unwrap_or((first_line + 1, 1));
            let message = e.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_string();
            return Err(LoadError::InvalidYaml {
                file: file.into(),
                line,
                column,
                message,
            });
        }
    };
    if value.is_null() {
        return Ok(());
    }
    let offset = chunk
        .lines()
        .position(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
        .unwrap_or(0);
    documents.push(Document {
        origin: Origin {
            file: file.into(),
            line: first_line + offset + 1,
        },
        value,
        fields: FieldLines::scan(chunk, first_line + 1),
    });
    Ok(())
}

pub use crate::core::ObjectRef;

impl ObjectRef {
    /// The identity of a manifest, with what is missing left empty.
    pub fn of(value: &Value) -> Self {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let metadata = value.get("metadata");
        let namespace = text(metadata.and_then(|m| m.get("namespace")));
        Self {
            kind: text(value.get("kind")),
            namespace: if namespace.is_empty() {
                "default".into()
            } else {
                namespace
            },
            name: text(metadata.and_then(|m| m.get("name"))),
        }
    }
}

/// A manifest the API server would refuse.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// Where it is.
    pub origin: Origin,
    /// What it is.
    pub object: ObjectRef,
    /// Why it is refused.
    pub violations: Vec<SchemaViolation>,
}

/// A document that is not a cx-conductor resource, skipped with a note.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Where it is.
    pub origin: Origin,
    /// What it is (`apiVersion` and kind).
    pub what: String,
}

/// The accepted objects of a set of manifests, by kind, plus what was refused or skipped.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Accepted Channels.
    pub channels: Vec<Channel>,
    /// Accepted Touchpoints.
    pub touchpoints: Vec<Touchpoint>,
    /// Accepted ExperienceKPIs.
    pub kpis: Vec<ExperienceKPI>,
    /// Accepted CustomerJourneys.
    pub journeys: Vec<CustomerJourney>,
    /// Where each accepted object came from.
    pub origins: std::collections::BTreeMap<ObjectRef, Origin>,
    /// The line of each field of each accepted object.
    pub fields: std::collections::BTreeMap<ObjectRef, FieldLines>,
    /// Objects the API server would refuse.
    pub rejected: Vec<Rejected>,
    /// Documents of other API groups, not checked.
    pub skipped: Vec<Skipped>,
}

impl Inventory {
    /// The accepted objects as a world without a cluster: statuses in the manifests are not
    /// trusted (KPI states and collector readiness are "not evaluated offline").
    pub fn offline_world(&self) -> crate::core::World<'_> {
        crate::core::World::new(
            &self.channels,
            &self.touchpoints,
            &self.kpis,
            &self.journeys,
        )
        .offline()
    }

    /// Validates every document and keeps the valid cx-conductor objects. A second object with the
    /// same kind, namespace and name is refused, as the API server would refuse to create it.
    pub fn from_documents(documents: &[Document], validator: &SchemaValidator) -> Self {
        let mut inventory = Inventory::default();
        for document in documents {
            let value = &document.value;
            let api_version = value
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let group = api_version
                .split_once('/')
                .map(|(g, _)| g)
                .unwrap_or_default();
            // A kind of this API without apiVersion is refused for it, not skipped.
            let kind = value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let ours =
                group == GROUP || (api_version.is_empty() && validator.kinds().any(|k| k == kind));
            if !ours {
                let kind = value
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("<no kind>");
                let what = if api_version.is_empty() {
                    format!("{kind} without apiVersion")
                } else {
                    format!("{api_version} {kind}")
                };
                inventory.skipped.push(Skipped {
                    origin: document.origin.clone(),
                    what,
                });
                continue;
            }
            let object = ObjectRef::of(value);
            let mut violations = validator.validate(value);
            if violations.is_empty() && inventory.origins.contains_key(&object) {
                violations.push(SchemaViolation::new(
                    "metadata.name",
                    "unique",
                    format!(
                        "{object} is already defined at {}",
                        inventory.origins[&object]
                    ),
                ));
            }
            if violations.is_empty() {
                match inventory.accept(&object, &validator.admitted(value)) {
                    Ok(()) => {
                        inventory
                            .origins
                            .insert(object.clone(), document.origin.clone());
                        inventory
                            .fields
                            .insert(object.clone(), document.fields.clone());
                        continue;
                    }
                    Err(e) => violations.push(SchemaViolation::new("", "type", e.to_string())),
                }
            }
            for violation in &mut violations {
                violation.origin = Some(document.locate(&violation.field));
            }
            inventory.rejected.push(Rejected {
                origin: document.origin.clone(),
                object,
                violations,
            });
        }
        inventory
    }

    /// Where `field` of an accepted object is written (its nearest enclosing field, or the
    /// object's first line, when the field itself is not written).
    pub fn locate(&self, object: &ObjectRef, field: &str) -> Option<Origin> {
        let origin = self.origins.get(object)?;
        let line = self
            .fields
            .get(object)
            .and_then(|f| f.line_of(field))
            .unwrap_or(origin.line);
        Some(Origin {
            file: origin.file.clone(),
            line,
        })
    }

    fn accept(&mut self, object: &ObjectRef, value: &Value) -> Result<(), serde_json::Error> {
        let mut value = value.clone();
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("namespace".into(), Value::String(object.namespace.clone()));
        }
        match object.kind.as_str() {
            "Channel" => self.channels.push(serde_json::from_value(value)?),
            "Touchpoint" => self.touchpoints.push(serde_json::from_value(value)?),
            "ExperienceKPI" => self.kpis.push(serde_json::from_value(value)?),
            "CustomerJourney" => self.journeys.push(serde_json::from_value(value)?),
            other => {
                return Err(serde::de::Error::custom(format!("unknown kind {other}")));
            }
        }
        Ok(())
    }
}
