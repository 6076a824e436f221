//! Manifests named with `-f`: files, directories (their `*.yaml`, `*.yml` and `*.json`
//! files in name order, subdirectories too with `-R`) and `-` for standard input.
//!
//! Reading and parsing happen before anything is sent, so a malformed document stops the
//! command before it changes anything, with the file and the document named.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use skiff_api::{ManifestError, TypedObject, parse_objects};

/// The extensions read from a directory.
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// The text of one manifest and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The path as given (or found in a directory), `STDIN` for `-`.
    pub name: String,
    /// The manifest's text.
    pub text: String,
}

/// One object of a manifest, with the manifest it came from.
#[derive(Clone, Debug)]
pub struct ManifestObject {
    /// The [`Source::name`].
    pub source: String,
    /// The object, its type resolved.
    pub object: TypedObject,
}

impl ManifestObject {
    /// The namespace the object goes to ("" for cluster-scoped types): its own, else
    /// `default`. With an `explicit` `-n`, an object of another namespace is refused, as
    /// kubectl refuses it.
    ///
    /// # Errors
    /// The namespace mismatch, worded as kubectl words it.
    pub fn namespace_in(&self, default: &str, explicit: bool) -> Result<String, String> {
        if let Some(own) = self.object.namespace()
            && explicit
            && self.object.resource.namespaced()
            && own != default
        {
            return Err(format!(
                "the namespace from the provided object \"{own}\" does not match the \
                 namespace \"{default}\". You must pass '--namespace={own}' to perform this \
                 operation"
            ));
        }
        Ok(self
            .object
            .target_namespace(default)
            .unwrap_or("")
            .to_owned())
    }

    /// `document 2` (or `document 2, item 1` inside a `kind: List`), counting from 1.
    pub fn document(&self) -> String {
        let location = self.object.location;
        match location.item {
            Some(item) => format!("document {}, item {}", location.index + 1, item + 1),
            None => format!("document {}", location.index + 1),
        }
    }
}

/// Why manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A path given with `-f` does not exist.
    #[error("the path \"{path}\" does not exist")]
    Missing {
        /// The path.
        path: String,
    },
    /// A file or directory could not be read.
    #[error("reading {path}")]
    Read {
        /// The path.
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A manifest is malformed or names a type Skiff does not serve.
    #[error("error parsing {name}")]
    Parse {
        /// The [`Source::name`].
        name: String,
        #[source]
        source: ManifestError,
    },
    /// The files hold no object at all.
    #[error("no objects passed to {verb}")]
    Empty {
        /// The command (`apply`, `create`, `delete`).
        verb: &'static str,
    },
}

/// Reads every manifest `paths` name, in order; `stdin` is read for `-` (once).
///
/// # Errors
/// A path that does not exist or cannot be read.
pub fn read_sources(
    paths: &[String],
    recursive: bool,
    stdin: &mut dyn Read,
) -> Result<Vec<Source>, InputError> {
    let mut sources = Vec::new();
    let mut stdin_read = false;
    for path in paths {
        if path == "-" {
            if !stdin_read {
                let mut text = String::new();
                stdin
                    .read_to_string(&mut text)
                    .map_err(|source| InputError::Read {
                        path: "standard input".to_owned(),
                        source,
                    })?;
                sources.push(Source {
                    name: "STDIN".to_owned(),
                    text,
                });
                stdin_read = true;
            }
            continue;
        }
        let p = Path::new(path);
        if !p.exists() {
            return Err(InputError::Missing { path: path.clone() });
        }
        if p.is_dir() {
            for file in manifest_files(p, recursive)? {
                sources.push(read_file(&file)?);
            }
        } else {
            sources.push(read_file(p)?);
        }
    }
    Ok(sources)
}

fn read_file(path: &Path) -> Result<Source, InputError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
        path: name.clone(),
        source,
    })?;
    Ok(Source { name, text })
}

/// The manifest files of a directory in name order (subdirectories' after, with
/// `recursive`).
fn manifest_files(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>, InputError> {
    let read_err = |source| InputError::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort();
    let mut files = Vec::new();
    let mut subdirectories = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                subdirectories.push(entry);
            }
        } else if entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e))
        {
            files.push(entry);
        }
    }
    for sub in subdirectories {
        files.extend(manifest_files(&sub, true)?);
    }
    Ok(files)
}

/// Parses every source into objects, all of them before any is used.
///
/// # Errors
/// The first malformed document, named by its source; [`InputError::Empty`] when there
/// are no objects at all.
pub fn parse_sources(
    sources: &[Source],
    verb: &'static str,
) -> Result<Vec<ManifestObject>, InputError> {
    let mut objects = Vec::new();
    for source in sources {
        let parsed = parse_objects(&source.text).map_err(|error| InputError::Parse {
            name: source.name.clone(),
            source: error,
        })?;
        objects.extend(parsed.into_iter().map(|object| ManifestObject {
            source: source.name.clone(),
            object,
        }));
    }
    if objects.is_empty() {
        return Err(InputError::Empty { verb });
    }
    Ok(objects)
}

/// [`read_sources`] then [`parse_sources`], reading `-` from the process's stdin.
///
/// # Errors
/// As those two.
pub fn load(
    paths: &[String],
    recursive: bool,
    verb: &'static str,
) -> Result<Vec<ManifestObject>, InputError> {
    let sources = read_sources(paths, recursive, &mut std::io::stdin().lock())?;
    parse_sources(&sources, verb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::runtime::error_chain;

    const CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";

    #[test]
    fn a_directory_is_read_in_name_order_skipping_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yml"), CONFIGMAP.replace("a\n", "b\n")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), CONFIGMAP).unwrap();
        std::fs::write(
            dir.path().join("c.json"),
            r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("README.md"), "# not a manifest").unwrap();
        std::fs::create_dir(dir.path().join("nested")).unwrap();
        std::fs::write(
            dir.path().join("nested/d.yaml"),
            CONFIGMAP.replace("a\n", "d\n"),
        )
        .unwrap();

        let path = dir.path().display().to_string();
        let sources =
            read_sources(std::slice::from_ref(&path), false, &mut std::io::empty()).unwrap();
        let names: Vec<_> = sources
            .iter()
            .map(|s| s.name.rsplit('/').next().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.yaml", "b.yml", "c.json"]);

        let recursive = read_sources(&[path], true, &mut std::io::empty()).unwrap();
        assert_eq!(recursive.len(), 4);
        assert!(recursive[3].name.ends_with("nested/d.yaml"));
    }

    #[test]
    fn a_dash_reads_standard_input_once() {
        let mut stdin = CONFIGMAP.as_bytes();
        let sources = read_sources(&["-".into(), "-".into()], false, &mut stdin).unwrap();
        assert_eq!(
            sources,
            [Source {
                name: "STDIN".into(),
                text: CONFIGMAP.into()
            }]
        );
        let objects = parse_sources(&sources, "apply").unwrap();
        assert_eq!(objects[0].object.name(), Some("a"));
        assert_eq!(objects[0].document(), "document 1");
    }

    #[test]
    fn a_file_that_does_not_exist_is_named_like_kubectl_names_it() {
        let error =
            read_sources(&["/no/such/file.yaml".into()], false, &mut std::io::empty()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the path \"/no/such/file.yaml\" does not exist"
        );
    }

    #[test]
    fn a_malformed_document_is_reported_with_its_file_and_number() {
        let sources = [Source {
            name: "app.yaml".into(),
            text: format!("{CONFIGMAP}---\napiVersion: v1\nkind: ConfigMap\nmetadata: [\n"),
        }];
        let error = parse_sources(&sources, "apply").unwrap_err();
        let text = error_chain(&error);
        assert!(
            text.starts_with("error parsing app.yaml: document 2 (line 6): malformed YAML"),
            "{text}"
        );
    }

    #[test]
    fn a_document_of_an_unknown_kind_stops_the_parse() {
        let sources = [Source {
            name: "x.yaml".into(),
            text: "apiVersion: v1\nkind: Widget\nmetadata:\n  name: w\n".into(),
        }];
        let text = error_chain(&parse_sources(&sources, "apply").unwrap_err());
        assert_eq!(
            text,
            "error parsing x.yaml: document 1 (line 1): unknown kind \"Widget\" for apiVersion \"v1\""
        );
    }

    #[test]
    fn items_of_a_list_are_numbered_within_their_document() {
        let sources = [Source {
            name: "list.yaml".into(),
            text: "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n".into(),
        }];
        let objects = parse_sources(&sources, "apply").unwrap();
        assert_eq!(objects[1].document(), "document 1, item 2");
    }

    #[test]
    fn input_without_objects_is_an_error() {
        let sources = [Source {
            name: "STDIN".into(),
            text: "# nothing\n---\n".into(),
        }];
        assert_eq!(
            parse_sources(&sources, "apply").unwrap_err().to_string(),
            "no objects passed to apply"
        );
    }
}
