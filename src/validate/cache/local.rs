//! Local folder mode of the schema cache: schemas from files instead of a
//! registry (layout in [`super`]'s doc).
//!
//! In: the folder path and a cache key. Out: the schema text and kind read
//! from the matching file, compiled by the caller. Runs on the ingest thread
//! (start-up preload, then one synchronous read per miss, answer cached), so
//! there is no worker and never a `Pending`.

use super::*;

const EXTENSIONS: [(&str, SchemaKind); 3] =
    [("avsc", SchemaKind::Avro), ("json", SchemaKind::Json), ("proto", SchemaKind::Protobuf)];

/// Reads and compiles every schema file; lists every broken one.
pub(super) fn preload(dir: &Path, shared: &Shared) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("schema folder {}: {e}", dir.display()))?;
    let mut keys = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        if path.is_dir() {
            for file in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let Some(stem) = schema_stem(&file.path()) else { continue };
                match (name.as_str(), stem.parse::<u32>()) {
                    ("ids", Ok(id)) => keys.push(Key::Id(id)),
                    (_, Ok(_)) if is_version_number(&stem) => keys.push(Key::Subject(name.clone(), stem)),
                    _ => {}
                }
            }
        } else if let Some(stem) = schema_stem(&path) {
            keys.push(Key::Subject(stem, LATEST.to_string()));
        }
    }
    keys.sort();
    keys.dedup();
    let mut errors = Vec::new();
    for key in &keys {
        match read_schema(dir, key) {
            Ok(schema) => match catch_unwind(AssertUnwindSafe(|| compile(schema.kind, &schema.text))) {
                Ok(Ok(compiled)) => shared.store(key, None, Entry::Ready(Arc::new(compiled))),
                Ok(Err(why)) => errors.push(format!("{}: {why}", describe(dir, key))),
                Err(_) => errors.push(format!("{}: schema compiler panicked", describe(dir, key))),
            },
            Err(LookupError::Invalid(why) | LookupError::Unavailable(why)) => errors.push(why),
            Err(LookupError::NotFound) => {}
        }
    }
    if !errors.is_empty() {
        return Err(format!(
            "schema folder {}: {} file(s) unusable:\n  {}",
            dir.display(),
            errors.len(),
            errors.join("\n  ")
        ));
    }
    // Latest of a subject with only versioned files = highest version.
    for key in &keys {
        let Key::Subject(subject, version) = key else { continue };
        let entry = {
            let subjects = super::read(&shared.subjects);
            let Some(versions) = subjects.map.get(subject) else { continue };
            if version == LATEST || versions.contains_key(LATEST) {
                continue;
            }
            let Ok(latest) = latest_version(dir, subject) else { continue };
            versions.get(&latest).map(|s| s.entry.clone())
        };
        if let Some(entry) = entry {
            shared.store(&Key::Subject(subject.clone(), LATEST.to_string()), None, entry);
        }
    }
    tracing::info!(folder = %dir.display(), schemas = keys.len(), "schema folder loaded");
    Ok(())
}

/// A miss in local mode: look on disk now, cache the answer.
pub(super) fn load_now(dir: &Path, shared: &Shared, key: Key) -> Lookup {
    let answer = read_schema(dir, &key).map(|schema| (None, schema));
    match shared.settle(&key, answer) {
        Ok(entry) => entry.lookup(),
        // Local reads never say Unavailable; be safe anyway.
        Err(_) => Lookup::Pending,
    }
}

fn describe(dir: &Path, key: &Key) -> String {
    match key {
        Key::Id(id) => format!("{}/ids/{id}", dir.display()),
        Key::Subject(s, v) if v == LATEST => format!("{}/{s}", dir.display()),
        Key::Subject(s, v) => format!("{}/{s}/{v}", dir.display()),
    }
}

fn schema_stem(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?;
    EXTENSIONS.iter().any(|(e, _)| *e == ext).then(|| path.file_stem()?.to_str().map(str::to_string))?
}

/// Subjects become file names: refuse anything that could leave `dir`.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

fn read_schema(dir: &Path, key: &Key) -> Result<RegistrySchema, LookupError> {
    let base = match key {
        Key::Id(id) => dir.join("ids").join(id.to_string()),
        Key::Subject(subject, _) if !is_safe_name(subject) => return Err(LookupError::NotFound),
        Key::Subject(subject, version) if version == LATEST => {
            let flat = dir.join(subject);
            match find(&flat)? {
                Some(found) => return load(found),
                None => {
                    let latest = latest_version(dir, subject)?;
                    dir.join(subject).join(latest)
                }
            }
        }
        Key::Subject(_, version) if !is_version_number(version) => return Err(LookupError::NotFound),
        Key::Subject(subject, version) => dir.join(subject).join(version),
    };
    find(&base)?.map_or(Err(LookupError::NotFound), load)
}

fn latest_version(dir: &Path, subject: &str) -> Result<String, LookupError> {
    let versions = std::fs::read_dir(dir.join(subject)).map_err(|_| LookupError::NotFound)?;
    versions
        .flatten()
        .filter_map(|f| schema_stem(&f.path()))
        .filter(|v| is_version_number(v))
        .max_by_key(|v| v.parse::<u64>().unwrap_or(0))
        .ok_or(LookupError::NotFound)
}

/// `<base>.avsc|json|proto`; two of them for one key is an error.
fn find(base: &Path) -> Result<Option<(SchemaKind, PathBuf)>, LookupError> {
    let mut found = None;
    for (ext, kind) in EXTENSIONS {
        // Appended, not `with_extension`: subjects such as `com.acme.Order`
        // (RecordNameStrategy) contain dots.
        let mut path = base.as_os_str().to_owned();
        path.push(".");
        path.push(ext);
        let path = PathBuf::from(path);
        if path.is_file() {
            if found.is_some() {
                return Err(LookupError::Invalid(format!("{}: more than one schema file", base.display())));
            }
            found = Some((kind, path));
        }
    }
    Ok(found)
}

fn load((kind, path): (SchemaKind, PathBuf)) -> Result<RegistrySchema, LookupError> {
    let text = std::fs::read_to_string(&path).map_err(|e| LookupError::Invalid(format!("{}: {e}", path.display())))?;
    Ok(RegistrySchema { kind, text, references: 0 })
}
