"""A small Sphinx extension that keeps the built book self-contained and its console clean.

- Jupyter Book 1 always loads sphinx-thebe, which (with this Sphinx) writes its configuration
  script twice per page -- a console error -- and points at a CDN. The book offers Binder and
  Colab launch buttons, not live code on the page, so we drop thebe's scripts.
- pydata-sphinx-theme leaves the colour mode empty on a first visit and logs an error; we give
  it an explicit default.
- The ipywidgets HTML manager typesets labels with MathJax 2's ``MathJax.Hub``; the site
  serves MathJax 3. ``_static/mathjax2_compat.js`` bridges the two (Jupyter Book adds every
  script in ``_static/`` to every page, as a plain script that runs before the deferred MathJax).
"""


def _drop_thebe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if scripts is None:
        return
    keep = []
    for script in scripts:
        body = getattr(script, "attributes", {}).get("body", "") or ""
        if "THEBE_JS_URL" in body or "thebe" in str(script):
            continue
        keep.append(script)
    context["script_files"] = keep


def _theme_defaults(app, config):
    # pydata-sphinx-theme reads the first-visit mode from the template context.
    context = dict(config.html_context or {})
    context.setdefault("default_mode", "auto")
    config.html_context = context


def setup(app):
    app.connect("config-inited", _theme_defaults)
    app.connect("html-page-context", _drop_thebe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
