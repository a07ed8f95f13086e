"""Notebooks written to disk for `jupyter audit run`."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def write_notebook(path, *sources, markdown_first=False):
    cells = [new_code_cell(s) for s in sources]
    if markdown_first:
        cells.insert(0, new_markdown_cell("# a job"))
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, str(path))
    return nb
