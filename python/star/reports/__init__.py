"""Reports on runs and trained models: tables, pictures and analyses written beside a run."""
