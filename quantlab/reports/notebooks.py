"""Find quantlab's shipped notebooks and run one headless with papermill (HTML export beside it)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

__all__ = ["NotebookError", "notebooks_dir", "notebook_path", "execute", "export_html", "first_line", "widget_views"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

QUICKSTART = "01_quickstart.ipynb"
REPORT = "04_report.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: the kernel's own log is noise on a terminal (a warning about local TCP, "KeyboardInterrupt caught in
#: kernel" when a failed run is shut down); cell errors land in the notebook
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]


class NotebookError(RuntimeError):
    """A notebook cell failed. ``cell`` (execution count), ``ename``, ``evalue`` say which and
    why; ``notebook`` and ``html`` are the executed copies (written anyway, with the error)."""

    def __init__(self, message: str, *, notebook: Path | None = None, html: Path | None = None,
                 cell: Any = None, ename: str | None = None, evalue: str | None = None) -> None:
        super().__init__(message)
        self.notebook, self.html, self.cell, self.ename, self.evalue = notebook, html, cell, ename, evalue


# --------------------------------------------------------------------------- notebooks
def notebooks_dir() -> Path:
    """The folder holding quantlab's notebooks.

    The checkout's ``notebooks/`` (editable install: ``Path(quantlab.__file__).parents[1]``),
    else the copy shipped as package data (``quantlab/notebooks/``), else
    ``<prefix>/share/quantlab/notebooks``.

    >>> (notebooks_dir() / "01_quickstart.ipynb").is_file()
    True
    """
    import quantlab

    pkg = Path(quantlab.__file__).resolve().parent
    import site

    # installed as data-files (pyproject [tool.setuptools.data-files]) into the prefix or the user base
    shared = [Path(base) / "share" / "quantlab" / "notebooks" for base in (sys.prefix, site.USER_BASE or sys.prefix)]
    for candidate in (pkg.parent / "notebooks", pkg / "notebooks", *shared):
        if (candidate / QUICKSTART).is_file():
            return candidate
    raise FileNotFoundError(
        f"quantlab's notebooks are not installed: none of {pkg.parent / 'notebooks'}, {pkg / 'notebooks'}, "
        f"{shared[0]} holds {QUICKSTART}. Install quantlab from a checkout (`pip install -e .`) or a wheel that ships them."
    )


def notebook_path(name: str) -> Path:
    """The path of a shipped notebook (``"01_quickstart"`` or ``"01_quickstart.ipynb"``).

    >>> notebook_path("04_report").name
    '04_report.ipynb'
    """
    name = name if name.endswith(".ipynb") else name + ".ipynb"
    path = notebooks_dir() / name
    if not path.is_file():
        shipped = sorted(p.name for p in notebooks_dir().glob("*.ipynb"))
        raise FileNotFoundError(f"no notebook {name!r} in {notebooks_dir()}; shipped: {shipped}.")
    return path


def first_line(text: Any) -> str:
    """The first non-blank line of ``text`` (an error message's headline)."""
    lines = [ln for ln in str(text or "").strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


#: Cells with one of these tags are left out of the exported page: papermill's parameter
#: cells and notes addressed to whoever edits the notebook, not to its reader.
HIDDEN_TAGS = frozenset({"parameters", "injected-parameters", "author-notes"})


def report_title(nb: Any, default: str) -> str:
    """The exported page's title: ``nb.metadata.title``, else the strategy a papermill run was
    given (``strategy`` parameter, its file stem), else ``default`` (the notebook's name)."""
    if nb.metadata.get("title"):
        return str(nb.metadata["title"])
    strategy = (nb.metadata.get("papermill") or {}).get("parameters", {}).get("strategy")
    if strategy:
        return f"{Path(str(strategy)).stem} — strategy report"
    return default


def export_html(notebook: str | os.PathLike[str], output: str | os.PathLike[str] | None = None, *,
                include_input: bool = False) -> Path:
    """Write the notebook as a standalone HTML page (``.html`` beside it by default).

    The page is for a reader, not the author: code input cells and prompts are left out
    (``include_input=True`` keeps them), cells tagged ``parameters``/``injected-parameters``/
    ``author-notes`` are dropped, and the title is the strategy's name (:func:`report_title`).

    Live widget views are dropped where an output also carries a static rendering, so the
    page shows quantlab's HTML/PNG fallbacks offline instead of empty widget placeholders.

    >>> export_html("report.ipynb")                 # doctest: +SKIP
    PosixPath('report.html')
    """
    import nbformat
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    output = Path(output) if output is not None else notebook.with_suffix(".html")
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data and WIDGET_VIEW in data and len(data) > 1:
                del data[WIDGET_VIEW]
    nb.metadata.pop("widgets", None)
    nb.cells = [c for c in nb.cells if not HIDDEN_TAGS & set(c.get("metadata", {}).get("tags", []))]
    title = report_title(nb, notebook.stem)
    nb.metadata["title"] = title
    exporter = HTMLExporter(exclude_input=not include_input, exclude_input_prompt=not include_input,
                            exclude_output_prompt=not include_input)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    output.write_text(body, encoding="utf-8")
    return output


def widget_views(nb: Any) -> list[dict[str, Any]]:
    """Every widget view in a notebook's outputs: ``cell`` (index), ``model_id``, ``saved`` (its model is
    in the notebook's saved widget state, so it renders when the notebook is reopened instead of
    "model not found") and ``fallback`` (the other formats beside it, e.g. ``text/html``).

    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
    ...     "display_data", data={WIDGET_VIEW: {"model_id": "m1"}, "text/html": "<b>static</b>"})])])
    >>> widget_views(nb)
    [{'cell': 0, 'model_id': 'm1', 'saved': False, 'fallback': ['text/html']}]
    """
    state = ((nb.metadata.get("widgets") or {}).get(WIDGET_STATE) or {}).get("state") or {}
    views = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = out.get("data") or {}
            if WIDGET_VIEW in data:
                model = data[WIDGET_VIEW].get("model_id")
                views.append({"cell": i, "model_id": model, "saved": model in state,
                              "fallback": sorted(k for k in data if k != WIDGET_VIEW)})
    return views


def execute(
    notebook: str | os.PathLike[str],
    output: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    html: bool = True,
    progress: bool = False,
    kernel_name: str | None = None,
    timeout: float | None = 600,
) -> Path:
    """Run ``notebook`` with papermill into ``output`` (parameters injected after the cell
    tagged ``parameters``) and, with ``html=True``, write ``output`` as HTML beside it.

    Raises :class:`NotebookError` when a cell fails: the message's first line names the
    cell and the error (``ename: first line of evalue``); the executed notebook and its
    HTML are still written so the traceback can be read there.

    >>> execute(notebook_path("04_report"), "out.ipynb", {"strategy": "my.py"})   # doctest: +SKIP
    PosixPath('out.ipynb')
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    html_path = output.with_suffix(".html")
    try:
        pm.execute_notebook(
            str(notebook), str(output), parameters=dict(parameters or {}), cwd=str(cwd) if cwd else None,
            progress_bar=progress, kernel_name=kernel_name, execution_timeout=timeout, log_output=False,
            extra_arguments=KERNEL_ARGUMENTS,
            # the widgets' state goes in the notebook's metadata: reopened, the widgets still open at the end
            # render from it (not "model not found"), beside the static HTML fallback every widget leaves
            store_widget_state=True,
        )
    except PapermillExecutionError as exc:
        written = export_html(output, html_path) if html and output.is_file() else None
        raise NotebookError(
            f"{Path(notebook).name} failed in cell [{exc.exec_count}]: {exc.ename}: {first_line(exc.evalue)}\n"
            f"(the executed notebook with the full traceback: {output}"
            + (f"; HTML: {written}" if written else "") + ")",
            notebook=output, html=written, cell=exc.exec_count, ename=exc.ename, evalue=str(exc.evalue),
        ) from None
    if html:
        export_html(output, html_path)
    return output

