// latchkey's only script. Browsers keep pages in their back/forward cache,
// some (Safari, and Chromium since it caches `Cache-Control: no-store`
// pages) even after the cookie that let them be shown was removed. A page
// restored that way is hidden and asked from the server again, which shows
// it only if the session still exists; otherwise the login page.
addEventListener("pageshow", (event) => {
  if (event.persisted) {
    document.documentElement.hidden = true;
    location.reload();
  }
});
