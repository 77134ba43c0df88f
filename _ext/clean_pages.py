"""A local Sphinx extension: every page declares each script once.

sphinx-thebe registers its inline configuration (``const THEBE_JS_URL = ...``) each time Sphinx
reads the sources, and Jupyter Book's build reads them twice (once with the script's file name
empty, once ``None``); a second ``const`` declaration is a JavaScript error on every page. The book
keeps the first copy of each script.
"""


def _one_of_each(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", _one_of_each, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
