// The dashboard's only script of its own (htmx does the rest); no inline script anywhere, so the
// Content-Security-Policy can forbid it.
"use strict";

// A live region never refreshes under a person's hands: not while a box in it is ticked, a field in it
// has focus, or a <details> in it is open (the refresh would undo the selection or the typing).
document.addEventListener("htmx:beforeRequest", function (event) {
  var region = event.detail.elt;
  if (!region || region.id !== "live") return;
  var busy = region.querySelector("input[type=checkbox]:checked, details[open]") ||
    (document.activeElement && region.contains(document.activeElement) &&
     document.activeElement.matches("input, select, textarea"));
  if (busy) event.preventDefault();
});

// "Select all" boxes: <input type=checkbox data-select-all="name"> ticks every box of that name.
document.addEventListener("change", function (event) {
  var box = event.target;
  if (!(box instanceof HTMLInputElement) || !box.dataset.selectAll) return;
  document.querySelectorAll('input[type=checkbox][name="' + box.dataset.selectAll + '"]').forEach(function (b) {
    b.checked = box.checked;
  });
});
