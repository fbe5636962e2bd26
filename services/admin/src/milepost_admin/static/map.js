// An organization's fleet on a Leaflet map. It polls the admin JSON routes with the
// console's session cookie: latest positions and recent alerts every few seconds, a
// vehicle's trips and stops of a day on demand. Every text from the data goes in through
// textContent: nothing the fleet sends is ever parsed as HTML.
(function () {
  "use strict";

  var el = document.getElementById("fleet-map");
  if (!el || !window.L) return;
  var cfg = el.dataset;
  var pollMs = Math.max(500, parseInt(cfg.pollMs, 10) || 5000);
  var LABELLED_UP_TO = 60; // vehicles; more than that and names only show on hover
  var COLORS = ["#1f5fbf", "#c2410c", "#7c3aed", "#0f766e", "#be185d", "#4d7c0f", "#a16207"];

  var statusLine = document.getElementById("map-status");
  var select = document.getElementById("map-vehicle");
  var dayInput = document.getElementById("map-day");
  var dayForm = document.getElementById("day-form");
  var daySummary = document.getElementById("day-summary");
  var dayList = document.getElementById("day-trips");
  var vehicleList = document.getElementById("map-vehicles");
  var alertList = document.getElementById("map-alerts");

  function formatter(options) {
    try {
      return new Intl.DateTimeFormat(undefined, Object.assign({ timeZone: cfg.timezone }, options));
    } catch (e) {
      return new Intl.DateTimeFormat(undefined, Object.assign({ timeZone: "UTC" }, options));
    }
  }
  var clock = formatter({ hour: "2-digit", minute: "2-digit" });
  var stamp = formatter({ dateStyle: "medium", timeStyle: "medium" });
  var now = formatter({ timeStyle: "medium" });

  function node(tag, className, text) {
    var n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }
  function speedText(kmh) {
    return kmh === null || kmh === undefined ? "—" : Math.round(kmh) + " km/h";
  }
  function distanceText(m) {
    return (m / 1000).toFixed(1) + " km";
  }
  function durationText(s) {
    var minutes = Math.round(s / 60);
    if (minutes < 60) return minutes + " min";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }
  function when(iso) {
    return iso ? clock.format(new Date(iso)) : "now";
  }
  function humanType(type) {
    var words = String(type).replace(/_/g, " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function SessionEnded() {}
  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(
      function (response) {
        if (response.status === 401) throw new SessionEnded();
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      }
    );
  }

  // The map, its layers and controls.
  var map = L.map(el, { worldCopyJump: true }).setView([50, 10], 4);
  if (cfg.tileUrl) {
    L.tileLayer(cfg.tileUrl, { maxZoom: 19, attribution: cfg.tileAttribution || "" }).addTo(map);
  } else {
    map.attributionControl.addAttribution("No map tiles configured");
  }
  var fleetLayer = L.featureGroup().addTo(map);
  var dayLayer = L.featureGroup().addTo(map);
  var alertLayer = L.layerGroup().addTo(map);
  L.control
    .layers(null, { Vehicles: fleetLayer, "Trips and stops": dayLayer, Alerts: alertLayer })
    .addTo(map);
  L.control.scale().addTo(map);

  // Vehicles: one marker each, moved in place when a newer fix comes.
  var vehicles = {}; // vehicle id -> {item, marker, heading, name, speed}
  var selectedId = null;
  var fitted = false;

  function decorate(entry) {
    var icon = entry.marker.getElement();
    var item = entry.item;
    entry.name.textContent = item.name;
    entry.speed.textContent = speedText(item.speed);
    var moving = item.speed !== null && item.speed > 1 && item.course !== null;
    entry.heading.hidden = !moving;
    if (moving) entry.heading.style.transform = "rotate(" + item.course + "deg)";
    if (!icon) return;
    icon.classList.remove("status-online", "status-offline", "status-unknown");
    icon.classList.add("status-" + item.status);
    icon.classList.toggle("disabled", item.disabled);
    icon.classList.toggle("selected", item.vehicle_id === selectedId);
    icon.dataset.vehicleId = item.vehicle_id;
    icon.dataset.lat = String(item.lat);
    icon.dataset.lon = String(item.lon);
    icon.dataset.status = item.status;
    icon.title = item.name;
    icon.setAttribute("aria-label", item.name + ", " + item.status + ", " + speedText(item.speed));
  }

  function popupOf(entry) {
    var item = entry.item;
    var box = node("div", "map-popup");
    box.appendChild(node("strong", null, item.name));
    var facts = node("dl");
    [
      ["Status", item.status],
      ["Speed", speedText(item.speed)],
      ["Last fix", stamp.format(new Date(item.fix_time))],
      ["Tracker", item.unique_id],
      ["Plate", item.plate || "—"],
    ].forEach(function (pair) {
      facts.appendChild(node("dt", null, pair[0]));
      facts.appendChild(node("dd", null, pair[1]));
    });
    box.appendChild(facts);
    var show = node("button", "secondary", "Trips of " + (dayInput.value || "the day"));
    show.type = "button";
    show.addEventListener("click", function () {
      select.value = item.vehicle_id;
      loadDay();
    });
    box.appendChild(show);
    return box;
  }

  function addVehicle(item, labelled) {
    var dot = node("span", "vehicle-dot");
    var heading = node("span", "vehicle-heading");
    var holder = node("div");
    holder.appendChild(heading);
    holder.appendChild(dot);
    var icon = L.divIcon({ className: "vehicle-marker", html: holder, iconSize: [18, 18] });
    var marker = L.marker([item.lat, item.lon], { icon: icon, title: item.name, keyboard: true });
    var label = node("span");
    var entry = {
      item: item,
      marker: marker,
      heading: heading,
      name: label.appendChild(node("span", "name")),
      speed: label.appendChild(node("span", "speed")),
    };
    marker.bindTooltip(label, {
      permanent: labelled,
      direction: "right",
      offset: [10, 0],
      className: "vehicle-label",
    });
    marker.bindPopup(function () {
      return popupOf(entry);
    });
    // Leaflet makes a new icon element whenever the layer is shown again.
    marker.on("add", function () {
      decorate(entry);
    });
    marker.on("click", function () {
      select.value = item.vehicle_id;
    });
    vehicles[item.vehicle_id] = entry;
    fleetLayer.addLayer(marker);
    return entry;
  }

  function showFleet(items) {
    var seen = {};
    var labelled = items.length <= LABELLED_UP_TO;
    items.forEach(function (item) {
      seen[item.vehicle_id] = true;
      var entry = vehicles[item.vehicle_id] || addVehicle(item, labelled);
      entry.item = item;
      entry.marker.setLatLng([item.lat, item.lon]);
      decorate(entry);
    });
    Object.keys(vehicles).forEach(function (id) {
      if (!seen[id]) {
        fleetLayer.removeLayer(vehicles[id].marker);
        delete vehicles[id];
      }
    });
    if (!fitted && items.length) {
      fitted = true;
      fitFleet();
    }
    listVehicles(items);
    fillPicker(items);
    if (requested && vehicles[requested]) focusRequested();
  }

  // ?vehicle=<id> (a device's page links here): that vehicle, once, with its trips of the day.
  var requested = new URLSearchParams(location.search).get("vehicle");

  function focusRequested() {
    var entry = vehicles[requested];
    requested = null;
    select.value = entry.item.vehicle_id;
    map.setView(entry.marker.getLatLng(), 15);
    entry.marker.openPopup();
    loadDay();
  }

  function fitFleet() {
    if (!fleetLayer.getLayers().length) return;
    map.fitBounds(fleetLayer.getBounds(), { padding: [40, 40], maxZoom: 14 });
  }

  function byName(a, b) {
    return a.name.localeCompare(b.name) || a.vehicle_id.localeCompare(b.vehicle_id);
  }

  function listVehicles(items) {
    var rows = items.slice().sort(byName);
    vehicleList.replaceChildren();
    if (!rows.length) vehicleList.appendChild(node("li", "muted", "No vehicle has reported yet."));
    rows.forEach(function (item) {
      var li = node("li");
      var go = node("button", "link", item.name);
      go.type = "button";
      go.addEventListener("click", function () {
        var entry = vehicles[item.vehicle_id];
        if (!entry) return;
        map.setView(entry.marker.getLatLng(), Math.max(map.getZoom(), 14));
        entry.marker.openPopup();
      });
      li.appendChild(go);
      li.appendChild(node("span", "badge " + item.status, item.status));
      li.appendChild(node("span", null, speedText(item.speed)));
      li.appendChild(node("span", "meta", "last fix " + stamp.format(new Date(item.fix_time))));
      vehicleList.appendChild(li);
    });
  }

  function fillPicker(items) {
    var rows = items.slice().sort(byName);
    var wanted = rows.map(function (i) { return i.vehicle_id + "\u0000" + i.name; }).join("\n");
    if (select.dataset.options === wanted) return;
    select.dataset.options = wanted;
    var chosen = select.value;
    while (select.options.length > 1) select.remove(1);
    rows.forEach(function (item) {
      select.appendChild(new Option(item.name, item.vehicle_id));
    });
    select.value = chosen;
  }

  // Alerts of the last 24 hours as pins.
  var pins = {}; // alert id -> marker
  var pinIcon = new L.Icon.Default({ className: "alert-pin" });

  function vehicleName(id) {
    return vehicles[id] ? vehicles[id].item.name : "vehicle " + id.slice(0, 8);
  }

  function alertText(alert) {
    return humanType(alert.type) + " · " + vehicleName(alert.vehicle_id) + " · " + when(alert.occurred_at);
  }

  function showAlerts(items) {
    var seen = {};
    items.forEach(function (alert) {
      if (alert.lat === null || alert.lon === null) return;
      seen[alert.id] = true;
      if (pins[alert.id]) return;
      var pin = L.marker([alert.lat, alert.lon], { icon: pinIcon, title: humanType(alert.type) });
      pin.bindTooltip(node("span", null, alertText(alert)));
      pin.on("add", function () {
        var icon = pin.getElement();
        if (icon) icon.dataset.alertId = alert.id;
      });
      pins[alert.id] = pin;
      alertLayer.addLayer(pin);
    });
    Object.keys(pins).forEach(function (id) {
      if (!seen[id]) {
        alertLayer.removeLayer(pins[id]);
        delete pins[id];
      }
    });
    alertList.replaceChildren();
    if (!items.length) alertList.appendChild(node("li", "muted", "None."));
    items.slice().reverse().slice(0, 50).forEach(function (alert) {
      var li = node("li");
      var pin = pins[alert.id];
      if (pin) {
        var go = node("button", "link", humanType(alert.type));
        go.type = "button";
        go.addEventListener("click", function () {
          map.setView(pin.getLatLng(), Math.max(map.getZoom(), 14));
          pin.openTooltip();
        });
        li.appendChild(go);
      } else {
        li.appendChild(node("span", null, humanType(alert.type)));
      }
      li.appendChild(node("span", null, vehicleName(alert.vehicle_id)));
      li.appendChild(node("span", "meta", stamp.format(new Date(alert.occurred_at))));
      alertList.appendChild(li);
    });
  }

  // A vehicle's trips and stops of a day.
  function loadDay() {
    var id = select.value;
    var day = dayInput.value;
    if (!id || !day) return;
    selectedId = id;
    Object.keys(vehicles).forEach(function (key) { decorate(vehicles[key]); });
    var base = cfg.deviceUrl + encodeURIComponent(id);
    var query = "?date=" + encodeURIComponent(day);
    daySummary.textContent = "Loading…";
    Promise.all([getJson(base + "/trips" + query), getJson(base + "/stops" + query)])
      .then(function (answers) {
        drawDay(answers[0], answers[1]);
      })
      .catch(function (error) {
        if (error instanceof SessionEnded) return sessionEnded();
        daySummary.textContent = "Could not load the trips (" + error.message + ").";
      });
  }

  function drawDay(trips, stops) {
    dayLayer.clearLayers();
    dayList.replaceChildren();
    var total = 0;
    trips.items.forEach(function (trip, index) {
      var color = COLORS[index % COLORS.length];
      var points = trip.route.coordinates.map(function (c) { return [c[1], c[0]]; });
      if (points.length < 2) points = [[trip.start_lat, trip.start_lon], [trip.end_lat, trip.end_lon]];
      var text =
        when(trip.start_time) + "–" + when(trip.end_time) + " · " + distanceText(trip.distance_m) +
        " · " + durationText(trip.duration_s) + " · max " + speedText(trip.max_speed);
      var line = L.polyline(points, { className: "trip-line", color: color, weight: 5, opacity: 0.85 });
      line.bindTooltip(node("span", null, text), { sticky: true });
      dayLayer.addLayer(line);
      var path = line.getElement();
      if (path) path.setAttribute("data-trip-id", trip.id);
      total += trip.distance_m;
      var li = node("li");
      var swatch = node("span", "swatch");
      swatch.style.background = color;
      li.appendChild(swatch);
      var go = node("button", "link", when(trip.start_time) + "–" + when(trip.end_time));
      go.type = "button";
      go.addEventListener("click", function () {
        map.fitBounds(line.getBounds(), { padding: [30, 30], maxZoom: 16 });
      });
      li.appendChild(go);
      li.appendChild(node("span", null, distanceText(trip.distance_m)));
      li.appendChild(node("span", "meta", durationText(trip.duration_s) + ", max " + speedText(trip.max_speed)));
      dayList.appendChild(li);
    });
    stops.items.forEach(function (stop) {
      var circle = L.circleMarker([stop.lat, stop.lon], {
        className: "stop-point",
        radius: 7,
        color: "#14213d",
        weight: 2,
        fillColor: "#ffffff",
        fillOpacity: 1,
      });
      var text = "Stop " + when(stop.start_time) + "–" + (stop.end_time ? when(stop.end_time) : "now") +
        " · " + durationText(stop.duration_s);
      circle.bindTooltip(node("span", null, text));
      dayLayer.addLayer(circle);
    });
    var name = vehicleName(trips.vehicle_id);
    daySummary.textContent = trips.items.length
      ? name + " on " + trips.day + ": " + trips.items.length + " trip(s), " + distanceText(total) +
        ", " + stops.items.length + " stop(s). Times in " + trips.timezone + "."
      : name + " made no trip on " + trips.day + " (" + stops.items.length + " stop(s)).";
    if (dayLayer.getLayers().length) {
      map.fitBounds(dayLayer.getBounds(), { padding: [30, 30], maxZoom: 16 });
    }
  }

  dayForm.addEventListener("submit", function (event) {
    event.preventDefault();
    loadDay();
  });

  // Polling: one request at a time, paused while the tab is hidden, stopped when the
  // console session has ended.
  var stopped = false;
  var fitButton = node("button", "link", "Show the whole fleet");
  fitButton.type = "button";
  fitButton.addEventListener("click", fitFleet);

  function setStatus(text, withFit) {
    statusLine.replaceChildren(node("span", null, text));
    if (withFit) {
      statusLine.appendChild(document.createTextNode(" · "));
      statusLine.appendChild(fitButton);
    }
  }

  function sessionEnded() {
    stopped = true;
    statusLine.replaceChildren(node("span", null, "Your session has ended. "));
    var again = node("a", null, "Log in again");
    again.href = "/admin/login?next=" + encodeURIComponent(location.pathname);
    statusLine.appendChild(again);
  }

  function poll() {
    if (stopped) return;
    if (document.hidden) {
      setTimeout(poll, pollMs);
      return;
    }
    Promise.all([getJson(cfg.positionsUrl), getJson(cfg.alertsUrl)])
      .then(function (answers) {
        showFleet(answers[0].items);
        showAlerts(answers[1].items);
        var count = answers[0].items.length;
        setStatus(count + " vehicle(s) on the map · updated " + now.format(new Date()), count > 0);
        el.dataset.updates = String((parseInt(el.dataset.updates, 10) || 0) + 1);
      })
      .catch(function (error) {
        if (error instanceof SessionEnded) return sessionEnded();
        setStatus("Could not update the map (" + error.message + "); retrying.", false);
      })
      .then(function () {
        if (!stopped) setTimeout(poll, pollMs);
      });
  }
  poll();
})();
