/* ipywidgets' HTML manager typesets widget labels with MathJax 2's API,
   MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]). This site serves MathJax 3, which has
   no Hub, so every explorer would log "Cannot read properties of undefined (reading 'Queue')".
   MathJax 3 replaces window.MathJax with its own object when it starts; we watch for that
   object and give it a Hub.Queue that typesets the element with MathJax 3. */
(function () {
  "use strict";

  function queue(job) {
    var element = Array.isArray(job) ? job[2] : undefined;
    var mathjax = window.MathJax;
    if (mathjax && typeof mathjax.typesetPromise === "function") {
      mathjax.typesetPromise(element ? [element] : undefined).catch(function () {});
    } // before start-up, MathJax 3 typesets the whole page by itself
  }

  function withHub(value) {
    if (value && typeof value === "object" && value.version && !value.Hub) {
      value.Hub = { Queue: queue };
    }
    return value;
  }

  var current = withHub(window.MathJax);
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (value) { current = withHub(value); },
  });
})();
