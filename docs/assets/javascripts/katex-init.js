// Render the formulas that pymdownx.arithmatex (generic mode) marks with class="arithmatex":
// inline \( ... \) in <span>, display \[ ... \] in <div>. KaTeX is bundled with the site
// (tools/mkdocs_katex.py), so this works offline.
(function () {
  "use strict";

  function render(root) {
    if (typeof katex === "undefined") {
      return;
    }
    root.querySelectorAll(".arithmatex").forEach(function (el) {
      if (el.getAttribute("data-katex") === "done") {
        return;
      }
      var tex = el.textContent.trim();
      var display = el.tagName === "DIV";
      if (tex.startsWith("\\(") && tex.endsWith("\\)")) {
        tex = tex.slice(2, -2);
      } else if (tex.startsWith("\\[") && tex.endsWith("\\]")) {
        tex = tex.slice(2, -2);
        display = true;
      }
      katex.render(tex, el, { displayMode: display, throwOnError: false });
      el.setAttribute("data-katex", "done");
    });
  }

  if (typeof document$ !== "undefined") {
    // Material for MkDocs: runs on the first load and after each instant navigation.
    document$.subscribe(function () {
      render(document.body);
    });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      render(document.body);
    });
  } else {
    render(document.body);
  }
})();
