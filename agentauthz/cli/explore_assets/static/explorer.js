// agentauthz explore: schema-aware pickers and the scratch buffer. Plain script, no build step.
// Values are placed with .value and .textContent only, never as HTML.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const data = document.getElementById("schema-data");
  const action = document.getElementById("action");
  if (data && action) {
    const schema = JSON.parse(data.textContent || "{}");
    const narrow = (listId, types) => {
      for (const option of document.querySelectorAll(`#${listId} option`)) {
        option.disabled = types.length > 0 && !types.includes(option.dataset.type);
      }
    };
    const show = () => {
      const chosen = schema[action.value] || { principals: [], resources: [] };
      for (const table of document.querySelectorAll("table.fields")) {
        table.hidden = table.dataset.action !== action.value;
      }
      narrow("principals", chosen.principals);
      narrow("resources", chosen.resources);
    };
    action.addEventListener("change", show);
    show();
    const fill = document.getElementById("fill-context");
    fill.addEventListener("click", () => {
      const chosen = schema[action.value];
      if (chosen) { document.getElementById("context").value = chosen.skeleton; }
    });
  }
  const file = document.getElementById("scratch-file");
  if (file) {
    file.addEventListener("change", () => {
      const source = [...document.querySelectorAll("textarea.source")].find((s) => s.dataset.file === file.value);
      document.getElementById("scratch-text").value = source ? source.value : "";
    });
  }
  const target = location.hash && document.getElementById(location.hash.slice(1));
  if (target) { target.scrollIntoView({ block: "center" }); }
});
