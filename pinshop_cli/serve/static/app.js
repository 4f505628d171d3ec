// The page's only script: calls the API and draws what it answers (no build step).
"use strict";
const $ = (id) => document.getElementById(id);
let session = null;

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function json(response) {
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function card(product) {
  const div = document.createElement("div");
  div.className = "card";
  // The API gives a photo's URL, or null for a product without one (no broken image).
  const img = document.createElement(product.image ? "img" : "div");
  img.className = product.image ? "" : "nophoto";
  if (product.image) {
    img.alt = product.title;
    img.src = product.image;
  } else {
    img.textContent = "no photo";
  }
  const title = document.createElement("div");
  title.textContent = product.title;
  const meta = document.createElement("div");
  meta.className = "meta";
  // What the shopper pays: a sale price only while it is below the price.
  const onSale = product.sale_price != null &&
    (product.price == null || product.sale_price < product.price);
  const price = onSale ? product.sale_price : product.price;
  meta.textContent = [
    price == null ? "price on request" : price.toFixed(2) + " " + (product.currency || ""),
    (product.availability || "").replace(/_/g, " "),
    product.score == null ? "" : Math.round(product.score * 100) + "% similar",
  ].filter(Boolean).join(" · ");
  div.append(img, title, meta);
  return div;
}

function showCards(products) {
  $("cards").replaceChildren(...products.map(card));
}

$("search").addEventListener("submit", async (e) => {
  e.preventDefault();
  const params = new URLSearchParams();
  for (const name of ["q", "category", "max_price", "color"]) {
    if ($(name).value) params.set(name, $(name).value);
  }
  try {
    const found = await json(await fetch("/search?" + params));
    showCards(found.matches);
    status(found.matches.length + " products");
  } catch (err) { status(err.message, true); }
});

async function shopPhoto(file) {
  const form = new FormData();
  form.append("image", file);
  status("matching…");
  const url = URL.createObjectURL(file);
  const img = document.createElement("img");
  img.src = url;
  $("photo").replaceChildren(img);
  try {
    const pin = await json(await fetch("/match", { method: "POST", body: form }));
    await img.decode();
    const scale = img.width / img.naturalWidth;
    pin.objects.forEach((obj, n) => {
      const [x1, y1, x2, y2] = obj.box.map((v) => v * scale);
      const box = document.createElement("div");
      box.className = "box";
      Object.assign(box.style, { left: x1 + "px", top: y1 + "px",
                                 width: (x2 - x1) + "px", height: (y2 - y1) + "px" });
      const label = document.createElement("span");
      label.textContent = (n + 1) + " " + (obj.category || obj.class_name || "");
      box.append(label);
      $("photo").append(box);
    });
    showCards(pin.objects.flatMap((obj) => obj.matches.slice(0, 3)));
    status(pin.objects.length + " regions");
  } catch (err) { status(err.message, true); }
}

$("file").addEventListener("change", () => $("file").files[0] && shopPhoto($("file").files[0]));
$("drop").addEventListener("dragover", (e) => e.preventDefault());
$("drop").addEventListener("drop", (e) => {
  e.preventDefault();
  if (e.dataTransfer.files[0]) shopPhoto(e.dataTransfer.files[0]);
});

// POST /chat answers as Server-Sent Events; read them from the response body as they come.
$("ask").addEventListener("submit", async (e) => {
  e.preventDefault();
  const message = $("message").value;
  $("message").value = "";
  const you = document.createElement("div");
  you.className = "you";
  you.textContent = "you: " + message;
  const answer = document.createElement("div");
  answer.className = "answer";
  $("log").append(you, answer);
  const response = await fetch("/chat", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ message, session }),
  });
  if (!response.ok) { answer.textContent = (await response.json()).error; return; }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const name = block.match(/^event: (.*)$/m)[1];
      const data = JSON.parse(block.match(/^data: (.*)$/m)[1]);
      if (name === "session") session = data.session;
      if (name === "token") answer.textContent += data.text;
      if (name === "reply") { answer.textContent = data.answer; answer.dataset.done = "1"; }
      if (name === "error") { answer.textContent = data.error; answer.className = "error"; }
    }
  }
});
