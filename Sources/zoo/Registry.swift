import ALBERT
import BERT
import DISTILL
import PRUNING
import QBERT
import ZooCore

/// Every plugin the CLI knows: its variants and its commands. Adding a plugin: a folder under
/// plugins/ (Package.swift picks it up) and its `plugin` here — one line.
let registry = Registry(
    BERT.plugin,
    ALBERT.plugin,
    DISTILL.plugin,
    QBERT.plugin,
    PRUNING.plugin
)
