// "Print" buttons (the CSP allows no inline script): print the page with the print stylesheet
document.addEventListener("click", function (event) {
  var target = event.target instanceof Element ? event.target.closest("[data-print]") : null;
  if (target) { window.print(); }
});
