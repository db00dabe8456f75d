// Offline widgets: the ipywidgets embed manager asks require.js for its fonts relative to the
// page; point that module path at the copy this book serves from its own _static/vendor folder.
(function () {
  var here = document.currentScript.src;
  var staticDir = here.slice(0, here.lastIndexOf("/") + 1);
  require.config({ paths: { "@jupyter-widgets/html-manager/dist": staticDir + "vendor" } });
})();
