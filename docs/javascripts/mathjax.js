// MathJax for the math wrapped by pymdownx.arithmatex (generic mode): $...$ and $$...$$ in the
// Markdown pages, and the :math: roles / .. math:: blocks of docstrings, which
// docs/_ext/rst_docstrings.py rewrites into $...$ / $$...$$ before mkdocstrings renders them.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};

if (typeof document$ !== "undefined") {
  // mkdocs-material, also with instant navigation
  document$.subscribe(() => {
    if (window.MathJax && MathJax.typesetPromise) {
      MathJax.startup.output.clearCache();
      MathJax.typesetClear();
      MathJax.texReset();
      MathJax.typesetPromise();
    }
  });
}
