// A display formula wider than the screen scrolls inside its own box: make exactly those
// boxes reachable with the keyboard, as the theme does for wide code blocks and tables.
(() => {
  const update = () => {
    document.querySelectorAll("div.math mjx-container").forEach((box) => {
      if (box.scrollWidth > box.clientWidth) box.tabIndex = 0;
      else box.removeAttribute("tabindex");
    });
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", update);
  else update();
  let timer;
  window.addEventListener("resize", () => {
    clearTimeout(timer);
    timer = setTimeout(update, 200);
  });
})();
