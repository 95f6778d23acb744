import BERT
import QBERT
import ZooCore

/// Every variant the CLI knows. Adding a plugin: a folder under plugins/ (Package.swift picks it up)
/// and its `variants` list here — one line.
let registry = Registry(
    BERT.variants,
    QBERT.variants
)
