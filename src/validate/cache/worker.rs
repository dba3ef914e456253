//! The schema cache's fetch side: the worker thread and how an answer from
//! the source becomes a cache entry.
//!
//! In: keys queued by lookups that missed (bounded channel), answers from the
//! [`SchemaFetcher`] (the registry client). Out: compiled schemas and
//! negative entries written into the shared maps that the ingest thread
//! reads. Local mode reuses [`Shared::settle`] synchronously.

use super::*;

impl Shared {
    /// Turns one answer from the source into a cache entry (compiling it),
    /// or `Err` for "could not ask" (the key stays pending).
    pub(super) fn settle(
        &self,
        key: &Key,
        answer: Result<(Option<u32>, RegistrySchema), LookupError>,
    ) -> Result<Entry, String> {
        let counters = &self.counters;
        let (id, entry) = match answer {
            Ok((id, schema)) => (id, self.compile_entry(key, id, &schema)),
            Err(LookupError::NotFound) => {
                counters.fetch_not_found.fetch_add(1, Relaxed);
                tracing::debug!(?key, "schema not found");
                (None, Entry::NotFound)
            }
            Err(LookupError::Invalid(why)) => {
                counters.fetch_invalid.fetch_add(1, Relaxed);
                tracing::warn!(?key, error = %why, "schema unusable");
                (None, Entry::Invalid)
            }
            Err(LookupError::Unavailable(why)) => {
                counters.fetch_unavailable.fetch_add(1, Relaxed);
                return Err(why);
            }
        };
        self.store(key, id, entry.clone());
        Ok(entry)
    }

    fn compile_entry(&self, key: &Key, id: Option<u32>, schema: &RegistrySchema) -> Entry {
        // A subject's latest usually has an ID we already compiled.
        if let Some(Entry::Ready(known)) = id.and_then(|id| read(&self.ids).map.get(&id).cloned()) {
            self.counters.fetch_ok.fetch_add(1, Relaxed);
            return Entry::Ready(known);
        }
        // A compiler panic on a hostile schema must not kill the worker.
        let compiled = catch_unwind(AssertUnwindSafe(|| compile(schema.kind, &schema.text)))
            .unwrap_or_else(|_| Err("schema compiler panicked".to_string()));
        match compiled {
            Ok(compiled) => {
                self.counters.fetch_ok.fetch_add(1, Relaxed);
                Entry::Ready(Arc::new(compiled))
            }
            Err(why) => {
                self.counters.fetch_invalid.fetch_add(1, Relaxed);
                let refs = schema.references;
                tracing::warn!(?key, ?id, kind = schema.kind.as_str(), references = refs, error = %why, "schema does not compile");
                Entry::Invalid
            }
        }
    }

    pub(super) fn store(&self, key: &Key, id: Option<u32>, entry: Entry) {
        let max = self.settings.max_schemas;
        match key {
            Key::Id(id) => write(&self.ids).insert(*id, entry, max),
            Key::Subject(subject, version) => {
                // Records carrying this ID then hit without another fetch.
                if let (Some(id), Entry::Ready(_)) = (id, &entry) {
                    let mut ids = write(&self.ids);
                    if !ids.map.contains_key(&id) {
                        ids.insert(id, entry.clone(), max);
                    }
                }
                let fresh = SubjectEntry { entry, fetched_ms: self.now_ms(), refreshing: AtomicBool::new(false) };
                let mut subjects = write(&self.subjects);
                match subjects.map.get_mut(subject.as_str()) {
                    Some(versions) => {
                        if versions.len() >= MAX_VERSIONS_PER_SUBJECT && !versions.contains_key(version) {
                            versions.retain(|v, e| v == LATEST || matches!(e.entry, Entry::Ready(_)));
                            if versions.len() >= MAX_VERSIONS_PER_SUBJECT {
                                versions.retain(|v, _| v == LATEST);
                            }
                        }
                        versions.insert(version.clone(), fresh);
                    }
                    None => {
                        let mut versions = HashMap::default();
                        versions.insert(version.clone(), fresh);
                        subjects.insert(subject.clone(), versions, max);
                    }
                }
            }
        }
        // After the maps changed: memos then ask the maps again.
        self.generation.fetch_add(1, Release);
    }
}

/// The fetch loop: one request at a time, a global backoff while the
/// registry is unreachable (every key would fail the same way, so there is
/// no point hammering it), failed keys retried round-robin.
pub(super) fn run(shared: Arc<Shared>, fetcher: Box<dyn SchemaFetcher>, rx: mpsc::Receiver<Msg>) {
    let settings = shared.settings.clone();
    let mut queue: VecDeque<Key> = VecDeque::new();
    let mut backoff = Duration::ZERO;
    let mut resume_at = Instant::now();
    loop {
        shared.clock_ms.store(shared.now_ms(), Relaxed);
        let now = Instant::now();
        let mut next = if queue.is_empty() {
            rx.recv_timeout(TICK)
        } else if resume_at > now {
            rx.recv_timeout((resume_at - now).min(TICK))
        } else {
            rx.try_recv().map_err(|e| match e {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            })
        };
        // Drain everything queued; always drain, so Stop is never stuck
        // behind a full channel.
        loop {
            match next {
                Ok(Msg::Fetch(key)) if queue.len() < settings.queue_capacity.max(1) => queue.push_back(key),
                // Over capacity (a long outage with many distinct keys):
                // forget it; the next lookup queues it again.
                Ok(Msg::Fetch(key)) => {
                    shared.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => break,
            }
            next = rx.try_recv().map_err(|_| RecvTimeoutError::Timeout);
        }
        if shared.stop.load(Relaxed) {
            return;
        }
        if Instant::now() < resume_at {
            continue;
        }
        let Some(key) = queue.pop_front() else { continue };
        // A panicking fetcher must not end the worker: every lookup would
        // then stay Pending forever. Treat it as an outage and retry.
        let answer = catch_unwind(AssertUnwindSafe(|| match &key {
            Key::Id(id) => fetcher.by_id(*id).map(|schema| (Some(*id), schema)),
            Key::Subject(subject, version) => {
                let version = (version != LATEST).then_some(version.as_str());
                fetcher.by_subject(subject, version).map(|(id, schema)| (Some(id), schema))
            }
        }))
        .unwrap_or_else(|_| Err(LookupError::Unavailable("schema fetcher panicked".into())));
        match shared.settle(&key, answer) {
            Ok(_) => {
                if !shared.available.swap(true, Relaxed) {
                    tracing::info!("schema registry reachable again");
                }
                backoff = Duration::ZERO;
                shared.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            }
            Err(why) => {
                backoff =
                    if backoff.is_zero() { settings.backoff_initial } else { (backoff * 2).min(settings.backoff_max) };
                resume_at = Instant::now() + backoff;
                if shared.available.swap(false, Relaxed) {
                    tracing::warn!(error = %why, ?key, "schema registry unavailable; lookups stay pending, retrying");
                } else {
                    tracing::debug!(error = %why, ?key, ?backoff, "schema registry still unavailable");
                }
                queue.push_back(key);
            }
        }
    }
}
